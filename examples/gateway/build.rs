//! The board build links with cortex-m-rt's `link.x` (which includes the
//! `memory.x` embassy-stm32 generates for the chip); the host build needs
//! nothing.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_BOARD").is_some() {
        println!("cargo:rustc-link-arg-bins=--nmagic");
        println!("cargo:rustc-link-arg-bins=-Tlink.x");
    }
}
