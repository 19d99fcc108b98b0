// Usage: tarrs-oracle DEST < archive.tar  (as root: it chroots into DEST).
use std::ffi::CString;
use std::io::Read;

fn main() {
    let dest = std::env::args().nth(1).expect("usage: tarrs-oracle DEST");
    let mut data = Vec::new();
    std::io::stdin().read_to_end(&mut data).expect("read stdin");
    let dest = CString::new(dest).expect("no NUL in DEST");
    let slash = CString::new("/").expect("static");
    // Safety: plain libc calls with valid NUL-terminated strings.
    unsafe {
        if libc::chroot(dest.as_ptr()) != 0 || libc::chdir(slash.as_ptr()) != 0 {
            eprintln!("chroot failed");
            std::process::exit(2);
        }
    }
    if let Err(err) = tar::Archive::new(&data[..]).unpack("/") {
        eprintln!("{err}");
        std::process::exit(1);
    }
}
