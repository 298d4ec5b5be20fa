//! `cargo xtask fuzz`: every parser target of crates/wgrad-fuzz under AFL++, through cargo-afl
//! (stable toolchain). Per target: seeds plus the kept corpus as the starting inputs, a run of
//! a fixed number of executions, then the queue minimised (afl-cmin) into the corpus the test
//! suite replays. Crashes and hangs are copied into the corpus too, so the suite reproduces
//! them, and the command fails. A Markdown row per target (for docs/fuzzing.md) is printed and
//! written to target/afl/report.md.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

const MANIFEST: &str = "crates/wgrad-fuzz/afl/Cargo.toml";
const CORPUS: &str = "crates/wgrad-fuzz/corpus";

fn fail(what: impl std::fmt::Display) -> i32 {
    eprintln!("xtask fuzz: {what}");
    1
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn status(mut c: Command) -> Result<(), i32> {
    eprintln!("xtask: $ {:?}", c);
    match c.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(fail(format!("{:?} failed ({s})", c.get_program()))),
        Err(e) => Err(fail(format!("could not start {:?}: {e}", c.get_program()))),
    }
}

pub fn run(args: &[OsString]) -> Result<i32, i32> {
    let mut execs: u64 = 1_000_000;
    let mut targets: Vec<String> = Vec::new();
    let mut it = args.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(a) = it.next() {
        if a == "--execs" {
            execs = it
                .next()
                .and_then(|v| v.parse().ok())
                .filter(|&v| v > 0)
                .ok_or_else(|| fail("--execs needs a positive number"))?;
        } else {
            targets.push(a);
        }
    }
    let root = std::env::current_dir().map_err(fail)?;
    let out = root.join("target/afl");

    let has_afl = cargo()
        .args(["afl", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_afl {
        let mut c = cargo();
        c.args(["install", "cargo-afl"]);
        status(c)?;
    }
    let mut c = cargo();
    c.args(["afl", "build", "--release", "--manifest-path", MANIFEST])
        .env("CARGO_TARGET_DIR", &out);
    status(c)?;
    let bin = out.join("release/wgrad-afl");
    let listed = Command::new(&bin).arg("--list").output().map_err(fail)?;
    let known: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    if let Some(t) = targets.iter().find(|t| !known.contains(t)) {
        return Err(fail(format!(
            "unknown target {t:?}; targets: {}",
            known.join(", ")
        )));
    }
    if targets.is_empty() {
        targets = known;
    }

    let mut rows = vec![
        "| target | executions | exec/s | time | corpus kept | crashes | hangs | edges (bitmap) |"
            .to_string(),
        "|---|---|---|---|---|---|---|---|".to_string(),
    ];
    let mut bad = false;
    for t in &targets {
        let input = out.join("in").join(t);
        let result = out.join("out").join(t);
        let kept = root.join(CORPUS).join(t);
        let _ = std::fs::remove_dir_all(&input);
        let _ = std::fs::remove_dir_all(&result);
        std::fs::create_dir_all(out.join("out")).map_err(fail)?;
        let mut seeds = Command::new(&bin);
        seeds.arg("--seeds").arg(t).arg(&input);
        status(seeds)?;
        copy_files(&kept, &input, "")?;

        let mut fuzz = cargo();
        fuzz.args(["afl", "fuzz", "-i"])
            .arg(&input)
            .arg("-o")
            .arg(&result)
            .args(["-E", &execs.to_string(), "-t", "5000", "--"])
            .arg(&bin)
            .arg(t)
            // Plain lines for a log instead of the curses screen; a VM's CPU governor and core
            // dumps handled elsewhere are not the fuzzer's business here.
            .env("AFL_NO_UI", "1")
            .env("AFL_SKIP_CPUFREQ", "1")
            .env("AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES", "1");
        status(fuzz)?;
        let found = result.join("default");
        let stats = std::fs::read_to_string(found.join("fuzzer_stats")).map_err(fail)?;
        let stat = |k: &str| -> String {
            stats
                .lines()
                .find_map(|l| {
                    let (key, v) = l.split_once(':')?;
                    (key.trim() == k).then(|| v.trim().to_string())
                })
                .unwrap_or_else(|| "?".into())
        };

        // The corpus kept is the smallest subset of the queue with the same coverage.
        let minimised = out.join("cmin").join(t);
        let _ = std::fs::remove_dir_all(&minimised);
        let mut cmin = match cmin_bash() {
            Some(script) => Command::new(script),
            None => {
                let mut c = cargo();
                c.args(["afl", "cmin"]);
                c
            }
        };
        cmin.arg("-i")
            .arg(found.join("queue"))
            .arg("-o")
            .arg(&minimised)
            .args(["-t", "5000", "--"])
            .arg(&bin)
            .arg(t)
            .stdout(std::process::Stdio::null());
        status(cmin)?;
        // Earlier findings stay in the corpus as regression inputs, whatever cmin keeps.
        let findings: Vec<(std::ffi::OsString, Vec<u8>)> = std::fs::read_dir(&kept)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.starts_with("crash-") || n.starts_with("hang-")
            })
            .filter_map(|e| Some((e.file_name(), std::fs::read(e.path()).ok()?)))
            .collect();
        let _ = std::fs::remove_dir_all(&kept);
        copy_files(&minimised, &kept, "")?;
        for (name, bytes) in &findings {
            std::fs::write(kept.join(name), bytes).map_err(fail)?;
        }
        let crashes = copy_files(&found.join("crashes"), &kept, "crash-")?;
        let hangs = copy_files(&found.join("hangs"), &kept, "hang-")?;
        bad |= crashes + hangs > 0;
        let secs: u64 = stat("run_time").parse().unwrap_or(0);
        rows.push(format!(
            "| {t} | {} | {} | {} min {} s | {} | {crashes} | {hangs} | {} |",
            stat("execs_done"),
            stat("execs_per_sec"),
            secs / 60,
            secs % 60,
            count(&kept) - crashes - hangs - findings.len(),
            stat("bitmap_cvg"),
        ));
    }
    let report = rows.join("\n") + "\n";
    println!("{report}");
    std::fs::write(out.join("report.md"), &report).map_err(fail)?;
    if bad {
        return Err(fail(format!(
            "crashes or hangs found: they are in {CORPUS}/<target>/crash-*|hang-*, which \
             `cargo test -p wgrad-fuzz` now replays"
        )));
    }
    Ok(0)
}

/// AFL++'s shell afl-cmin beside the afl-fuzz that cargo-afl built. (The Python afl-cmin that
/// `cargo afl cmin` runs in AFL++ 4.40 keeps no file of a persistent-mode target: "0 unique
/// tuples".)
fn cmin_bash() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))?
        .join("afl.rs");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&base)
        .ok()?
        .flatten()
        .flat_map(|rustc| {
            std::fs::read_dir(rustc.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|afl| afl.path().join("afl/bin/afl-cmin.bash"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop()
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// Copies the plain files of `from` (if it exists) into `to` with `prefix` added; AFL's
/// README files are not inputs. Returns how many were copied.
fn copy_files(from: &Path, to: &Path, prefix: &str) -> Result<usize, i32> {
    let Ok(entries) = std::fs::read_dir(from) else {
        return Ok(0);
    };
    std::fs::create_dir_all(to).map_err(fail)?;
    let mut n = 0;
    for e in entries.flatten() {
        let p: PathBuf = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if !p.is_file() || name.starts_with("README") || name.starts_with('.') {
            continue;
        }
        // AFL's names hold ':' and ',' (id:000001,src:…): not portable as file names.
        let clean: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        std::fs::copy(&p, to.join(format!("{prefix}{clean}"))).map_err(fail)?;
        n += 1;
    }
    Ok(n)
}
