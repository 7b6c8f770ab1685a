//! Builds `csrc/long_double.c`, the extended-precision arithmetic of `INCRBYFLOAT` and
//! `HINCRBYFLOAT` (Rust has no `long double`; see the file).

fn main() {
    println!("cargo:rerun-if-changed=csrc/long_double.c");
    cc::Build::new()
        .file("csrc/long_double.c")
        .warnings(true)
        .compile("shoal_long_double");
}
