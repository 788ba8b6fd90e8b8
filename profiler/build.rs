//! Builds the eBPF programs (`profiler-ebpf`, for bpfel-unknown-none) and leaves the object in
//! OUT_DIR for `aya::include_bytes_aligned!`. Recipe from shared/toolchain.md: Debian's
//! rustc-web (it ships a prebuilt `core` for the BPF target) driven directly, bpf-linker from
//! ~/.cargo/bin. There is no fallback object: a profiler without its programs is broken, so a
//! missing toolchain fails the build with a message naming scripts/setup.sh.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const BPF_SYSROOT: &str = "/usr/lib/rustlib/bpfel-unknown-none";
const TARGET: &str = "bpfel-unknown-none";
/// Architectures whose kernel ABI the programs know (profiler-ebpf's `bpf_target_arch` cfgs).
const SUPPORTED_ARCHES: &[&str] = &["x86_64", "aarch64"];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let ebpf_dir = manifest_dir.join("../profiler-ebpf");
    for p in ["src", "Cargo.toml"] {
        println!("cargo::rerun-if-changed={}", ebpf_dir.join(p).display());
    }
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));

    let path = search_path();
    check_toolchain(&path);

    // The eBPF programs are built for the architecture the profiler is built for: the kernel
    // ABI (pt_regs layout, syscall conventions) is that architecture's.
    // CARGO_CFG_TARGET_ARCH is the target's (`--target aarch64-unknown-linux-gnu` gives
    // aarch64 on an x86_64 host); it reaches the eBPF crate, and aya-ebpf's own build scripts,
    // as `--cfg bpf_target_arch`, which selects the `pt_regs` layout behind `ctx.arg()`,
    // `ctx.ret()` and our register reads.
    let arch = env::var("CARGO_CFG_TARGET_ARCH").expect("set by cargo");
    println!("cargo::rerun-if-env-changed=CARGO_CFG_TARGET_ARCH");
    if !SUPPORTED_ARCHES.contains(&arch.as_str()) {
        eprintln!(
            "error: the profiler's eBPF programs know the kernel ABI (pt_regs layout, where a \
             function's return address is at its entry) of {}, not of target_arch {arch}",
            SUPPORTED_ARCHES.join(" and ")
        );
        std::process::exit(1);
    }
    // One inner target dir per architecture, beside the outer profiles
    // (<target>/[<triple>/]<profile>/build/<pkg>/out): check, clippy, test and release builds all
    // share it, so the programs are compiled once and every later build is a no-op.
    let inner_target = out_dir
        .ancestors()
        .nth(4)
        .map(|target| target.join(format!("profiler-ebpf-{arch}")))
        .unwrap_or_else(|| out_dir.join("bpf-target"));

    let mut cmd = Command::new(DEBIAN_CARGO);
    cmd.current_dir(&ebpf_dir)
        .args([
            "build",
            "-p",
            "profiler-ebpf",
            "--bins",
            "--release",
            "--target",
            TARGET,
        ])
        .arg("--target-dir")
        .arg(&inner_target)
        .env("PATH", &path)
        // rustup's proxies would pick stable 1.95, which has no BPF `core`.
        .env("RUSTC", DEBIAN_RUSTC)
        .env_remove("RUSTUP_TOOLCHAIN")
        // clippy and others wrap rustc for the outer build only.
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        // aya-ebpf uses one unstable feature; unlock it for that crate only.
        .env("RUSTC_BOOTSTRAP", "aya_ebpf")
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            [
                format!("--cfg=bpf_target_arch=\"{arch}\""),
                "-Cdebuginfo=2".to_string(),
                "-Clink-arg=--btf".to_string(),
            ]
            .join("\x1f"),
        );
    let output = cmd
        .output()
        .unwrap_or_else(|e| fail(&format!("could not run {DEBIAN_CARGO}: {e}")));
    if !output.status.success() {
        fail(&format!(
            "building the eBPF programs failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let object = inner_target.join(TARGET).join("release/profiler-ebpf");
    let dest = out_dir.join("profiler-ebpf");
    std::fs::copy(&object, &dest).unwrap_or_else(|e| {
        fail(&format!(
            "copying {} to {}: {e}",
            object.display(),
            dest.display()
        ))
    });

    generate_perfetto_protos(&manifest_dir, &out_dir);
}

/// PATH for the inner build: must find `bpf-linker` (installed by `cargo install` into
/// ~/.cargo/bin), so that directory goes first even when the outer PATH lacks it.
fn search_path() -> String {
    let cargo_bin = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .map(|c| c.join("bin"));
    let outer = env::var("PATH").unwrap_or_default();
    match cargo_bin {
        Some(bin) => format!("{}:{outer}", bin.display()),
        None => outer,
    }
}

fn check_toolchain(path: &str) {
    let mut missing = Vec::new();
    for file in [DEBIAN_CARGO, DEBIAN_RUSTC, BPF_SYSROOT] {
        if !Path::new(file).exists() {
            missing.push(file.to_string());
        }
    }
    let linker = path
        .split(':')
        .map(|d| Path::new(d).join("bpf-linker"))
        .find(|p| p.is_file());
    if linker.is_none() {
        missing.push("bpf-linker (on PATH or in ~/.cargo/bin)".to_string());
    }
    if !missing.is_empty() {
        fail(&format!(
            "the eBPF toolchain is missing: {}",
            missing.join(", ")
        ));
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    eprintln!(
        "The profiler embeds its eBPF programs and cannot be built without them. Install the \
         toolchain with `sudo scripts/setup.sh` (Debian rustc-web, libstd-rust-web-dev-bpf, \
         llvm-22-dev, bpf-linker 0.13), then build again."
    );
    std::process::exit(1);
}

/// Generates prost types for the trimmed Perfetto schema in `protos/` (see `protos/README.md`)
/// into OUT_DIR/perfetto.protos.rs, which `src/trace/proto.rs` includes. protox compiles the
/// .proto files in Rust, so no `protoc` is needed.
fn generate_perfetto_protos(manifest_dir: &Path, out_dir: &Path) {
    let protos = manifest_dir.join("protos");
    println!("cargo::rerun-if-changed={}", protos.display());
    let roots = ["protos/perfetto/trace/trace.proto"];
    let descriptors = protox::compile(roots, [manifest_dir])
        .unwrap_or_else(|e| panic!("compiling the Perfetto protos in {}: {e}", protos.display()));
    prost_build::Config::new()
        .out_dir(out_dir)
        .compile_fds(descriptors)
        .unwrap_or_else(|e| panic!("generating Rust for the Perfetto protos: {e}"));
}
