//! Where the named-dataset loaders look for files, in this order:
//!
//! 1. the directory the caller passed (if any);
//! 2. `$WGRAD_DATA/<name>`, then `$WGRAD_DATA` itself;
//! 3. a system location, when the dataset has one (Fashion-MNIST:
//!    `/usr/share/datasets/fashion-mnist`, from Debian's `apt-get install dataset-fashion-mnist`);
//! 4. the cache: `$XDG_CACHE_HOME/wgrad/<name>`, else `~/.cache/wgrad/<name>`.
//!
//! [`search_dirs`] builds that list from the environment; every loader also has a variant that
//! takes the list explicitly (`load_*_from`), which is what tests use so they never depend on
//! the environment or the machine.

use std::path::{Path, PathBuf};

/// Environment variable naming a directory of datasets.
pub const ENV_VAR: &str = "WGRAD_DATA";

/// The per-user cache directory for wgrad data: `$XDG_CACHE_HOME/wgrad` (when set and
/// absolute), else `$HOME/.cache/wgrad`; `None` when neither variable is usable.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME") {
        let p = PathBuf::from(x);
        if p.is_absolute() {
            return Some(p.join("wgrad"));
        }
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(PathBuf::from(home).join(".cache").join("wgrad"))
}

/// The directories to search for dataset `name`, in the order documented in this module,
/// without duplicates. Directories need not exist.
pub fn search_dirs(name: &str, user_dir: Option<&Path>, system_dir: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = user_dir {
        dirs.push(d.to_path_buf());
    }
    if let Some(root) = std::env::var_os(ENV_VAR).filter(|v| !v.is_empty()) {
        let root = PathBuf::from(root);
        dirs.push(root.join(name));
        dirs.push(root);
    }
    if let Some(d) = system_dir {
        dirs.push(d.to_path_buf());
    }
    if let Some(c) = cache_dir() {
        dirs.push(c.join(name));
    }
    let mut seen = Vec::new();
    dirs.retain(|d| {
        if seen.contains(d) {
            false
        } else {
            seen.push(d.clone());
            true
        }
    });
    dirs
}

/// The first of `names` that exists as a file in `dir`.
pub(crate) fn find_file(dir: &Path, names: &[String]) -> Option<PathBuf> {
    names.iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reads the environment but never sets it, so it is safe beside other tests.
    #[test]
    fn user_dir_first_system_before_cache_no_duplicates() {
        let user = Path::new("/nonexistent/user");
        let system = Path::new("/nonexistent/system");
        let dirs = search_dirs("thing", Some(user), Some(system));
        assert_eq!(dirs[0], user);
        let sys_at = dirs.iter().position(|d| d == system).unwrap();
        if let Some(cache) = cache_dir() {
            assert_eq!(dirs.last().unwrap(), &cache.join("thing"));
            assert!(sys_at < dirs.len() - 1);
        }
        let mut uniq = dirs.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), dirs.len());
        let twice = search_dirs("thing", Some(system), Some(system));
        assert_eq!(twice.iter().filter(|d| *d == system).count(), 1);
    }
}
