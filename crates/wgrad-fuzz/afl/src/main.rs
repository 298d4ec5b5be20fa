//! One AFL++ binary for every target (names: `wgrad_fuzz::TARGETS`):
//!
//! ```text
//! wgrad-afl <target>               # run under afl-fuzz: one input per iteration
//! wgrad-afl --seeds <target> <dir> # write the target's seed inputs into <dir>
//! wgrad-afl --list                 # the targets' names, one per line
//! ```

use std::path::Path;

fn find(name: &str) -> &'static wgrad_fuzz::Target {
    wgrad_fuzz::target(name).unwrap_or_else(|| {
        let names: Vec<&str> = wgrad_fuzz::TARGETS.iter().map(|t| t.name).collect();
        eprintln!(
            "wgrad-afl: no target {name:?}; targets: {}",
            names.join(", ")
        );
        std::process::exit(2);
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args == ["--list"] {
        for t in wgrad_fuzz::TARGETS {
            println!("{}", t.name);
        }
        return;
    }
    if let [flag, name, dir] = args.as_slice() {
        if flag == "--seeds" {
            let dir = Path::new(dir);
            if let Err(e) = std::fs::create_dir_all(dir) {
                eprintln!("wgrad-afl: {}: {e}", dir.display());
                std::process::exit(1);
            }
            for (i, seed) in (find(name).seeds)().iter().enumerate() {
                if let Err(e) = std::fs::write(dir.join(format!("seed-{i}")), seed) {
                    eprintln!("wgrad-afl: {}: {e}", dir.display());
                    std::process::exit(1);
                }
            }
            return;
        }
    }
    let [name] = args.as_slice() else {
        eprintln!("usage: wgrad-afl <target> | wgrad-afl --seeds <target> <dir>");
        std::process::exit(2);
    };
    let run = find(name).run;
    // No panic hook: the parsers' own catch_unwind (around third-party decoders) must work; a
    // panic that escapes is still an abort, which AFL reports.
    afl::fuzz_nohook!(|data: &[u8]| {
        run(data);
    });
}
