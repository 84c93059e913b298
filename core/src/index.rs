//! The integer type used for links inside the tables.
//!
//! Handles always carry `u32` indexes; inside the tables every link can be a
//! `u16` instead, which halves the bookkeeping of a small gateway (all
//! capacities must then stay below 65,535). Servers keep the default `u32`.

mod sealed {
    pub trait Sealed {}
    impl Sealed for u16 {}
    impl Sealed for u32 {}
}

/// An unsigned integer type for table links: `u16` or `u32`.
pub trait SlotIndex: Copy + Eq + core::fmt::Debug + sealed::Sealed + 'static {
    /// The "no slot" marker.
    const NIL: Self;
    /// Zero (also used for counts below [`Self::LIMIT`]).
    const ZERO: Self;
    /// Capacities must be below this.
    const LIMIT: usize;
    /// Packs an index below [`Self::LIMIT`], or `u32::MAX` for "no slot".
    fn pack(v: u32) -> Self;
    /// Unpacks to `u32`, with "no slot" as `u32::MAX`.
    fn unpack(self) -> u32;
}

impl SlotIndex for u16 {
    const NIL: u16 = u16::MAX;
    const ZERO: u16 = 0;
    const LIMIT: usize = u16::MAX as usize;
    #[inline]
    fn pack(v: u32) -> u16 {
        if v == u32::MAX {
            u16::MAX
        } else {
            v as u16
        }
    }
    #[inline]
    fn unpack(self) -> u32 {
        if self == u16::MAX {
            u32::MAX
        } else {
            u32::from(self)
        }
    }
}

impl SlotIndex for u32 {
    const NIL: u32 = u32::MAX;
    const ZERO: u32 = 0;
    const LIMIT: usize = u32::MAX as usize;
    #[inline]
    fn pack(v: u32) -> u32 {
        v
    }
    #[inline]
    fn unpack(self) -> u32 {
        self
    }
}
