//! `cargo xtask <command>`: the project's tasks, std only.
//!
//! ```text
//! cargo xtask demo [ARGS]     # adapter + Fashion-MNIST data, then train examples/fashion_mnist.rs
//! cargo xtask test [ARGS]     # make sure an adapter exists, then `cargo test --workspace ARGS`
//! cargo xtask bench [NAME] [ARGS]  # `cargo bench [--bench NAME] ARGS`
//! cargo xtask fuzz [TARGET…] [--execs N]  # AFL++ on the file parsers (docs/fuzzing.md)
//! ```
//! "Make sure an adapter exists" runs `examples/devices.rs --check`; when it reports none (exit
//! status 2), or only Mesa's GL software adapter (exit status 3), on a Debian/Ubuntu machine, the
//! software adapter (Mesa's lavapipe, package `mesa-vulkan-drivers`) is installed with apt-get,
//! as root or through `sudo -n`; the demo's
//! data set likewise comes from Debian's `dataset-fashion-mnist` when it is nowhere else.

mod fuzz;

use std::ffi::OsString;
use std::process::{exit, Command};

const USAGE: &str = "usage: cargo xtask <command> [args]

commands:
  demo [ARGS]          the main job: train a CNN on Fashion-MNIST and report test accuracy
                       (examples/fashion_mnist.rs; ARGS go to it, e.g. --epochs 1)
  test [ARGS]          run the whole test suite: cargo test --workspace ARGS (installs Open MPI
                       and libclang for wgrad-dist when missing)
  bench [NAME] [ARGS]  run the criterion benches: cargo bench [--bench NAME] ARGS
  fuzz [TARGET...] [--execs N]
                       fuzz the file parsers with AFL++ (cargo-afl, installed when missing),
                       N executions per target (default 1000000), all targets by default;
                       the inputs worth keeping replace crates/wgrad-fuzz/corpus/<target>

demo, test and bench first make sure a GPU adapter exists, installing the software one
(apt-get install mesa-vulkan-drivers) when there is none; demo installs the data set
(apt-get install dataset-fashion-mnist) when it is not in $WGRAD_DATA or the system folder.";

/// The package that provides the software adapter (lavapipe) on Debian and Ubuntu.
const SOFTWARE_ADAPTER: &str = "mesa-vulkan-drivers";
/// What `wgrad-dist` builds and tests with: Open MPI's launcher and headers, and libclang for
/// the `mpi` crate's bindgen step.
const MPI_PACKAGES: &str = "openmpi-bin libopenmpi-dev libclang-dev";
/// Debian's Fashion-MNIST package and the folder it installs (wgrad-data looks there).
const FASHION_MNIST: &str = "dataset-fashion-mnist";
const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

fn main() {
    let env = Env::new();
    let code = run(&env).unwrap_or_else(|code| code);
    if let Some((_, dir)) = env.vars.iter().find(|(k, _)| *k == "XDG_RUNTIME_DIR") {
        let _ = std::fs::remove_dir_all(dir);
    }
    exit(code);
}

/// Runs the command named on the command line; `Err` carries the exit status of a failure.
fn run(env: &Env) -> Result<i32, i32> {
    let mut args = std::env::args_os().skip(1);
    let Some(cmd) = args.next() else {
        eprintln!("{USAGE}");
        return Err(1);
    };
    let rest: Vec<OsString> = args.collect();
    match cmd.to_str() {
        Some("demo") => {
            env.ensure_adapter(true)?;
            env.ensure_fashion_mnist()?;
            let mut c = env.cargo(&["run", "--release", "--example", "fashion_mnist"]);
            if !rest.is_empty() {
                c.arg("--").args(&rest);
            }
            Ok(env.run(c))
        }
        Some("test") => {
            env.ensure_adapter(false)?;
            env.ensure_mpi()?;
            // Every test target runs even after one fails, so a report is complete.
            let mut c = env.cargo(&["test", "--workspace", "--no-fail-fast"]);
            c.args(&rest);
            Ok(env.run(c))
        }
        Some("bench") => {
            env.ensure_adapter(true)?;
            let mut c = env.cargo(&["bench"]);
            let mut rest = rest.into_iter().peekable();
            if let Some(name) = rest.next_if(|a| !a.to_string_lossy().starts_with('-')) {
                c.arg("--bench").arg(name);
            }
            c.args(rest);
            Ok(env.run(c))
        }
        Some("fuzz") => fuzz::run(&rest),
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            Ok(0)
        }
        _ => {
            eprintln!("xtask: unknown command {cmd:?}\n\n{USAGE}");
            Err(1)
        }
    }
}

/// Environment shared by every command this task starts.
struct Env {
    cargo: OsString,
    vars: Vec<(&'static str, OsString)>,
}

impl Env {
    fn new() -> Self {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut vars = Vec::new();
        // Mesa's device-select layer complains when XDG_RUNTIME_DIR is missing; give it one.
        if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
            if let Some(dir) = private_runtime_dir() {
                vars.push(("XDG_RUNTIME_DIR", dir));
            }
        }
        Env { cargo, vars }
    }

    fn cargo(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.cargo);
        c.args(args);
        c
    }

    fn cmd(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.args(args);
        c
    }

    /// Runs `c` with the shared environment, echoing it first; returns its exit status.
    fn run(&self, mut c: Command) -> i32 {
        c.envs(self.vars.iter().map(|(k, v)| (k, v)));
        println!(
            "xtask: $ {}",
            show(&c).replacen(&*self.cargo.to_string_lossy(), "cargo", 1)
        );
        match c.status() {
            Ok(s) => s.code().unwrap_or(1),
            Err(e) => {
                eprintln!("xtask: could not start {:?}: {e}", c.get_program());
                127
            }
        }
    }

    /// `examples/devices.rs --check`, built in the profile of the command that follows (release
    /// for the demo, dev for the tests), so a fresh machine compiles wgpu once per profile. Not
    /// `--quiet`: on a fresh machine this is the cold build of wgpu, minutes long, and cargo's
    /// progress is the only sign of life.
    fn probe(&self, release: bool) -> i32 {
        let mut args = vec!["run"];
        if release {
            args.push("--release");
        }
        args.extend(["--example", "devices", "--", "--check"]);
        self.run(self.cargo(&args))
    }

    fn ensure_adapter(&self, release: bool) -> Result<(), i32> {
        println!("xtask: looking for a GPU adapter");
        match self.probe(release) {
            0 => return Ok(()),
            2 => {
                println!(
                    "xtask: no adapter found; installing the software adapter ({SOFTWARE_ADAPTER})"
                );
                self.apt_install(
                    SOFTWARE_ADAPTER,
                    "install a GPU driver (Vulkan, Metal or DX12) or the software adapter",
                )?;
            }
            // Only Mesa's GL software adapter: usable, so a failed install is not fatal.
            3 => {
                println!(
                    "xtask: only a GL software adapter found; installing the Vulkan one ({SOFTWARE_ADAPTER})"
                );
                if self
                    .apt_install(SOFTWARE_ADAPTER, "for the faster Vulkan software adapter")
                    .is_err()
                {
                    println!("xtask: continuing on the GL software adapter");
                    return Ok(());
                }
            }
            code => {
                eprintln!("xtask: could not build or run examples/devices.rs (exit status {code})");
                return Err(code);
            }
        }
        println!("xtask: looking for a GPU adapter again");
        if !matches!(self.probe(release), 0 | 3) {
            eprintln!(
                "xtask: still no adapter after installing {SOFTWARE_ADAPTER}; see the message above"
            );
            return Err(1);
        }
        Ok(())
    }

    /// Fashion-MNIST's IDX files in `$WGRAD_DATA`, `$WGRAD_DATA/fashion-mnist` or Debian's
    /// folder; otherwise Debian's package is installed when apt can, and the example's own
    /// download into the cache is left to do it when apt cannot.
    fn ensure_fashion_mnist(&self) -> Result<(), i32> {
        let file = "train-images-idx3-ubyte.gz";
        let mut dirs = vec![std::path::PathBuf::from(FASHION_MNIST_DIR)];
        if let Some(d) = std::env::var_os("WGRAD_DATA") {
            let d = std::path::PathBuf::from(d);
            dirs.push(d.join("fashion-mnist"));
            dirs.push(d);
        }
        let present = |d: &std::path::PathBuf| {
            d.join(file).exists() || d.join(file.trim_end_matches(".gz")).exists()
        };
        if dirs.iter().any(present) {
            return Ok(());
        }
        println!("xtask: Fashion-MNIST not found; installing Debian's {FASHION_MNIST}");
        if self
            .apt_install(
                FASHION_MNIST,
                "put the four Fashion-MNIST IDX files in a folder named by $WGRAD_DATA, or install the data set",
            )
            .is_err()
        {
            // Not fatal: the loader downloads the canonical files into ~/.cache/wgrad
            // (checksums verified) and fails with the same advice when offline.
            println!("xtask: continuing; the example downloads Fashion-MNIST into its cache");
        }
        Ok(())
    }

    /// Open MPI and libclang for `wgrad-dist` (the `mpi` crate generates its bindings with
    /// bindgen, which needs libclang) and its two-rank tests (`mpirun`), from apt when missing.
    fn ensure_mpi(&self) -> Result<(), i32> {
        // Debian's package database when there is one (libclang's shared object alone is not
        // enough: bindgen also needs clang's own headers, which come with libclang-dev).
        let installed = |pkg: &str| {
            self.cmd("dpkg-query", &["-W", "-f=${Status}", pkg])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        };
        let has_dpkg = self.succeeds(self.cmd("dpkg-query", &["--version"]));
        let has_clang = !has_dpkg || installed("libclang-dev");
        let has_mpi = self.succeeds(self.cmd("mpirun", &["--version"]))
            && self.succeeds(self.cmd("mpicc", &["-showme:version"]))
            && (!has_dpkg || installed("libopenmpi-dev"));
        if has_clang && has_mpi {
            return Ok(());
        }
        println!("xtask: installing Open MPI and libclang for wgrad-dist's tests");
        self.apt_install(
            MPI_PACKAGES,
            "wgrad-dist (data-parallel training) needs Open MPI and libclang",
        )
    }

    /// `apt-get install -y PACKAGES` (space-separated), as root or through password-less
    /// sudo; `what` says what to do by hand when that is impossible.
    fn apt_install(&self, package: &str, what: &str) -> Result<(), i32> {
        let manual = format!(
            "{what}, e.g. on Debian/Ubuntu:\n    sudo apt-get install -y {package}\nthen run this command again"
        );
        if !cfg!(target_os = "linux") || !self.succeeds(self.cmd("apt-get", &["--version"])) {
            eprintln!("xtask: no apt-get here; {manual}");
            return Err(1);
        }
        // sudo may reset the environment, so it gets DEBIAN_FRONTEND through `env`.
        let prefix: &[&str] = if is_root() {
            &[]
        } else if self.succeeds(self.cmd("sudo", &["-n", "true"])) {
            &["sudo", "-n", "env", "DEBIAN_FRONTEND=noninteractive"]
        } else {
            eprintln!("xtask: not root and sudo needs a password; {manual}");
            return Err(1);
        };
        for args in [
            &["apt-get", "update"][..],
            &["apt-get", "install", "-y", "--no-install-recommends"],
        ] {
            let mut argv: Vec<&str> = prefix.iter().chain(args).copied().collect();
            if args[1] == "install" {
                argv.extend(package.split_whitespace());
            }
            let mut c = self.cmd(argv[0], &argv[1..]);
            c.env("DEBIAN_FRONTEND", "noninteractive");
            let code = self.run(c);
            if code != 0 {
                eprintln!(
                    "xtask: `{}` failed (exit status {code}); {manual}",
                    argv.join(" ")
                );
                return Err(1);
            }
        }
        Ok(())
    }

    fn succeeds(&self, mut c: Command) -> bool {
        c.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

/// The command line as a shell would show it.
fn show(c: &Command) -> String {
    std::iter::once(c.get_program())
        .chain(c.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn is_root() -> bool {
    // std has no geteuid; /proc/self/status has the effective uid as the second `Uid:` field.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// A fresh 0700 directory for XDG_RUNTIME_DIR.
#[cfg(unix)]
fn private_runtime_dir() -> Option<OsString> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = std::env::temp_dir().join(format!("wgrad-xdg-{}", std::process::id()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .ok()
        .map(|()| dir.into_os_string())
}

#[cfg(not(unix))]
fn private_runtime_dir() -> Option<OsString> {
    None
}
