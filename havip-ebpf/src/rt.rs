//! What every eBPF object of this crate needs once: a panic handler (the
//! verifier rejects any path that could reach it) and the license section
//! the kernel reads to allow GPL-only helpers.

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
