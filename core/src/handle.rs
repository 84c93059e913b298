//! Generation-checked handles to managers and connections.

/// Addresses one user's isolated manager.
///
/// A handle is a table index plus the generation of the slot when the manager
/// was created. When the manager is deactivated or reclaimed the slot's
/// generation moves on, so an old handle is refused with
/// [`Error::ManagerInactive`](crate::Error::ManagerInactive) and can never reach
/// the manager that later reuses the slot. Generations are 32 bits: only a
/// handle kept across 2³² reuses of its slot could alias a newer one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ManagerHandle {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl ManagerHandle {
    /// A handle that never addresses a manager, used in errors where the user
    /// has no manager at all.
    pub const NONE: ManagerHandle = ManagerHandle {
        index: u32::MAX,
        generation: 0,
    };
}

/// Addresses one connection. Like [`ManagerHandle`], it carries the slot's
/// generation: once the connection is gone the handle is refused, never routed
/// to a later connection that reuses the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ConnectionHandle {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

macro_rules! handle_accessors {
    ($t:ty) => {
        impl $t {
            /// The table slot this handle points at (stable while the handle is live).
            pub const fn index(self) -> u32 {
                self.index
            }
            /// The slot generation this handle was issued for.
            pub const fn generation(self) -> u32 {
                self.generation
            }
            /// A single number identifying this handle: generation in the high
            /// half, index in the low half. Useful as a map key or log field.
            pub const fn to_bits(self) -> u64 {
                ((self.generation as u64) << 32) | self.index as u64
            }
        }
    };
}
handle_accessors!(ManagerHandle);
handle_accessors!(ConnectionHandle);
