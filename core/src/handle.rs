//! Generation-checked handles to managers and connections.

/// Addresses one user's isolated manager.
///
/// A handle is a table index plus the generation of the slot when the manager
/// was created, plus the [`factory_tag`](crate::Config::factory_tag) of the
/// factory that issued it: a factory refuses a handle carrying another tag
/// with [`Error::UnknownManager`](crate::Error::UnknownManager), so a handle
/// of one factory (one shard, one tenant) never reaches the manager that sits
/// in the same slot of another. When the manager is deactivated or reclaimed the slot's
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
    pub(crate) tag: u32,
}

impl ManagerHandle {
    /// A handle that never addresses a manager, used in errors where the user
    /// has no manager at all.
    pub const NONE: ManagerHandle = ManagerHandle {
        index: u32::MAX,
        generation: 0,
        tag: 0,
    };
}

/// Addresses one connection. Like [`ManagerHandle`], it carries the slot's
/// generation and the issuing factory's tag: once the connection is gone the
/// handle is refused, never routed to a later connection that reuses the
/// slot, and another factory refuses it with
/// [`Error::UnknownConnection`](crate::Error::UnknownConnection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ConnectionHandle {
    pub(crate) index: u32,
    pub(crate) generation: u32,
    pub(crate) tag: u32,
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
            /// The [`factory_tag`](crate::Config::factory_tag) of the factory
            /// that issued this handle.
            pub const fn factory_tag(self) -> u32 {
                self.tag
            }
            /// A single number identifying this handle within its factory:
            /// generation in the high half, index in the low half. Useful as
            /// a map key or log field for one factory; it leaves out the
            /// [`factory_tag`](Self::factory_tag), so handles of several
            /// factories (shards) need the pair `(factory_tag(), to_bits())`.
            pub const fn to_bits(self) -> u64 {
                ((self.generation as u64) << 32) | self.index as u64
            }
        }
    };
}
handle_accessors!(ManagerHandle);
handle_accessors!(ConnectionHandle);
