//! The userlane core's lifecycle scenarios on an emulated Cortex-M4F.
//!
//! Boots on QEMU's `mps2-an386` board (`cargo run --release`, see
//! `.cargo/config.toml`), runs every scenario, prints each by name through
//! semihosting and exits QEMU with status 0 when all pass, 1 otherwise. A
//! panic or a hard fault also exits with 1.
//!
//! The scenarios build their factories on the stack (the gateway profile of
//! `core/tests/memory_budget.rs`), the last one uses the shim's
//! `SharedFactory` in a `static`; the run ends with what it used of the RAM.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

mod check;
mod lane;
mod scenarios;
mod shim;

use cortex_m_rt::{entry, exception, ExceptionFrame, STACK_PAINT_VALUE};
use cortex_m_semihosting::debug::{self, EXIT_FAILURE, EXIT_SUCCESS};
use cortex_m_semihosting::hprintln;
// Prints the panic message and exits QEMU with failure (feature `exit`).
use panic_semihosting as _;

use check::Failure;

/// A scenario: its name and the function that runs it.
type Scenario = (&'static str, fn() -> Result<(), Failure>);

/// Every scenario, in the order they run.
const SCENARIOS: [Scenario; 13] = [
    ("usize_is_32_bits", scenarios::usize_is_32_bits),
    (
        "create_managers_for_two_users",
        scenarios::create_managers_for_two_users,
    ),
    (
        "connections_and_the_per_user_cap",
        scenarios::connections_and_the_per_user_cap,
    ),
    (
        "fan_out_reaches_only_that_users_connections",
        scenarios::fan_out_reaches_only_that_users_connections,
    ),
    (
        "send_to_connection_reaches_one_connection",
        scenarios::send_to_connection_reaches_one_connection,
    ),
    (
        "a_full_queue_refuses_the_whole_send",
        scenarios::a_full_queue_refuses_the_whole_send,
    ),
    (
        "a_slow_consumer_is_closed_with_1013",
        scenarios::a_slow_consumer_is_closed_with_1013,
    ),
    (
        "deactivate_closes_every_connection_with_1000",
        scenarios::deactivate_closes_every_connection_with_1000,
    ),
    (
        "timers_follow_the_callers_clock",
        scenarios::timers_follow_the_callers_clock,
    ),
    (
        "timers_across_the_32_bit_millisecond_wrap",
        scenarios::timers_across_the_32_bit_millisecond_wrap,
    ),
    (
        "the_inbound_budget_refuses_then_closes_with_1008",
        scenarios::the_inbound_budget_refuses_then_closes_with_1008,
    ),
    (
        "the_gateway_profile_at_full_capacity",
        scenarios::the_gateway_profile_at_full_capacity,
    ),
    (
        "a_static_shard_serves_async_writers",
        shim::a_static_shard_serves_async_writers,
    ),
];

#[entry]
fn main() -> ! {
    hprintln!("userlane-core on a Cortex-M4F (QEMU mps2-an386)");
    // Measured first, while the stack's high-water mark is still main's own.
    let before = ram_use().stack_peak;
    let built = build_a_gateway();
    hprintln!(
        "     ManagerFactory::new for the gateway profile: {} bytes of stack at its peak ({})",
        ram_use().stack_peak - before,
        if built { "built" } else { "refused" }
    );
    let mut passed = 0u32;
    let mut failed = 0u32;
    for (name, scenario) in SCENARIOS {
        match scenario() {
            Ok(()) => {
                passed += 1;
                hprintln!("ok   {}", name);
            }
            Err(failure) => {
                failed += 1;
                hprintln!("FAIL {}: {}", name, failure);
            }
        }
    }
    let ram = ram_use();
    hprintln!(
        "RAM: {} bytes of statics, stack high-water {} bytes",
        ram.statics,
        ram.stack_peak
    );
    hprintln!("cortex-m-check: {} passed, {} failed", passed, failed);
    debug::exit(if failed == 0 {
        EXIT_SUCCESS
    } else {
        EXIT_FAILURE
    });
    // Only reached without semihosting: nothing to report to.
    loop {
        cortex_m::asm::wfi();
    }
}

/// Builds a gateway factory at run time with `ManagerFactory::new`, on the
/// stack, so that its peak stack use can be measured; true if it was built.
#[inline(never)]
fn build_a_gateway() -> bool {
    let factory = lane::Gateway::new(lane::config());
    core::hint::black_box(&factory).is_ok()
}

/// What the run used of the RAM.
struct RamUse {
    /// `.data`, `.bss` and `.uninit`: the statics (the shim's shard among them).
    statics: usize,
    /// The deepest the stack reached since reset.
    stack_peak: usize,
}

/// The statics' size from the linker's symbols, and the stack's high-water
/// mark: cortex-m-rt paints the stack with [`STACK_PAINT_VALUE`] at reset
/// (feature `paint-stack`), and the lowest word no longer painted is the
/// deepest the stack has been.
fn ram_use() -> RamUse {
    extern "C" {
        /// Start of `.data`, the first section in RAM.
        static __sdata: u32;
        /// End of the statics, lowest address the stack may reach.
        static _stack_end: u32;
        /// Initial stack pointer (top of RAM).
        static _stack_start: u32;
    }
    let ram_start = core::ptr::addr_of!(__sdata) as usize;
    let bottom = core::ptr::addr_of!(_stack_end);
    let top = core::ptr::addr_of!(_stack_start) as usize;
    let sp = cortex_m::register::msp::read() as usize;
    let mut word = bottom;
    while (word as usize) < sp {
        // SAFETY: `word` is 4-byte aligned (the linker script asserts it of
        // `_stack_end`) and lies between the end of the statics and the
        // current stack pointer: RAM that cortex-m-rt painted at reset and
        // that nothing else refers to now. It is only read.
        #[allow(unsafe_code)]
        let value = unsafe { core::ptr::read_volatile(word) };
        if value != STACK_PAINT_VALUE {
            break;
        }
        word = word.wrapping_add(1);
    }
    RamUse {
        statics: bottom as usize - ram_start,
        stack_peak: top - word as usize,
    }
}

/// A fault is a failure too: report it and exit instead of hanging.
/// (cortex-m-rt requires the handler to be declared `unsafe fn`; its body
/// does nothing unsafe.)
#[allow(unsafe_code)]
#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    hprintln!("FAIL hard fault: {:?}", frame);
    debug::exit(EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}
