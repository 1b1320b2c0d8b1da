//! Finds the MariaDB/MySQL server binaries: from the system, from webstack's cache, or by
//! downloading Debian's packages into the cache without root.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::DatabaseError;

/// The server binaries webstack runs, and how to run them.
#[derive(Debug, Clone)]
pub struct Engine {
    pub mariadbd: PathBuf,
    pub install_db: PathBuf,
    /// `--basedir` for an engine unpacked into the cache; `None` for the system's.
    pub basedir: Option<PathBuf>,
    /// Extra library folders for an unpacked engine (`LD_LIBRARY_PATH`).
    pub library_path: Option<String>,
    pub origin: EngineOrigin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineOrigin {
    System,
    Cache,
}

/// Where downloads kept across stacks go (a MariaDB obtained without root):
/// `$XDG_CACHE_HOME/webstack`, else `~/.cache/webstack`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("webstack");
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join(".cache/webstack")
}

/// The packages that hold the server and its install script on Debian and Ubuntu.
const PACKAGES: &[&str] = &["mariadb-server-core", "mariadb-client-core"];

impl Engine {
    /// Looks for a usable engine without installing anything. `WEBSTACK_MARIADBD` names a
    /// server binary to use; otherwise the system's, then the cache's.
    pub fn find(cache_dir: &Path) -> Option<Engine> {
        if let Some(path) = std::env::var_os("WEBSTACK_MARIADBD") {
            let mariadbd = PathBuf::from(path);
            let install_db = sibling_install_db(&mariadbd)?;
            return Some(Engine {
                mariadbd,
                install_db,
                basedir: None,
                library_path: None,
                origin: EngineOrigin::System,
            });
        }
        for name in ["mariadbd", "mysqld"] {
            let found = which(name)
                .or_else(|| Some(PathBuf::from("/usr/sbin").join(name)).filter(|p| p.is_file()));
            if let Some(mariadbd) = found {
                if let Some(install_db) = sibling_install_db(&mariadbd) {
                    return Some(Engine {
                        mariadbd,
                        install_db,
                        basedir: None,
                        library_path: None,
                        origin: EngineOrigin::System,
                    });
                }
            }
        }
        let root = cache_dir.join("mariadb/root");
        let mariadbd = root.join("usr/sbin/mariadbd");
        let install_db = root.join("usr/bin/mariadb-install-db");
        if mariadbd.is_file() && install_db.is_file() {
            return Some(Engine {
                mariadbd,
                install_db,
                basedir: Some(root.join("usr")),
                library_path: Some(library_path(&root)),
                origin: EngineOrigin::Cache,
            });
        }
        None
    }

    /// Finds an engine, or obtains one: on a Debian-family machine the packages are
    /// downloaded with `apt-get download` and unpacked into the cache (no root needed);
    /// elsewhere the error names what to install. `progress` is told each step.
    pub fn find_or_obtain(
        cache_dir: &Path,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Engine, DatabaseError> {
        if let Some(engine) = Engine::find(cache_dir) {
            return Ok(engine);
        }
        if which("apt-get").is_none() || which("dpkg-deb").is_none() {
            return Err(DatabaseError::NoEngine);
        }
        // Several nodes (or tests) may get here at once: one downloads, the others wait
        // on the lock and then find what it unpacked.
        std::fs::create_dir_all(cache_dir).map_err(|e| {
            DatabaseError::Obtain(format!("cannot create {}: {e}", cache_dir.display()))
        })?;
        let lock = std::fs::File::create(cache_dir.join("mariadb.lock"))
            .map_err(|e| DatabaseError::Obtain(e.to_string()))?;
        // SAFETY: flock(2) on a file descriptor we own; released when `lock` is dropped.
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
        if let Some(engine) = Engine::find(cache_dir) {
            return Ok(engine);
        }
        progress("MariaDB is not installed: downloading Debian's packages into webstack's cache (no root needed)");
        obtain_debian(cache_dir, progress)?;
        Engine::find(cache_dir).ok_or(DatabaseError::NoEngine)
    }

    /// A command for one of the engine's programs, with the library path set.
    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        if let Some(lib) = &self.library_path {
            c.env("LD_LIBRARY_PATH", lib);
        }
        c
    }
}

fn library_path(root: &Path) -> String {
    [
        "usr/lib/x86_64-linux-gnu",
        "lib/x86_64-linux-gnu",
        "usr/lib/aarch64-linux-gnu",
        "lib/aarch64-linux-gnu",
        "usr/lib",
    ]
    .iter()
    .map(|d| root.join(d).display().to_string())
    .collect::<Vec<_>>()
    .join(":")
}

fn sibling_install_db(mariadbd: &Path) -> Option<PathBuf> {
    let prefix = mariadbd.parent()?.parent()?;
    [
        "bin/mariadb-install-db",
        "bin/mysql_install_db",
        "scripts/mariadb-install-db",
    ]
    .iter()
    .map(|p| prefix.join(p))
    .find(|p| p.is_file())
    .or_else(|| which("mariadb-install-db"))
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// Downloads the engine's packages, and those of their dependencies that the machine lacks,
/// and unpacks them under `cache/mariadb/root`.
fn obtain_debian(cache_dir: &Path, progress: &mut dyn FnMut(&str)) -> Result<(), DatabaseError> {
    let work = cache_dir.join("mariadb/debs");
    // Unpacked aside and renamed into place, so a download cut short never leaves a
    // half-unpacked engine where `find` looks.
    let root = cache_dir.join("mariadb/root.partial");
    let _ = std::fs::remove_dir_all(cache_dir.join("mariadb"));
    std::fs::create_dir_all(&work)
        .map_err(|e| DatabaseError::Obtain(format!("cannot create {}: {e}", work.display())))?;
    let mut wanted: Vec<String> = PACKAGES.iter().map(|s| s.to_string()).collect();
    let deps = run(Command::new("apt-cache")
        .args([
            "depends",
            "--recurse",
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
            "--no-pre-depends",
        ])
        .args(PACKAGES))?;
    for line in deps.lines() {
        let name = line.trim().trim_start_matches("Depends:").trim();
        if name.is_empty()
            || name.starts_with('<')
            || name.contains(' ')
            || wanted.iter().any(|w| w == name)
        {
            continue;
        }
        if !installed(name) {
            wanted.push(name.to_string());
        }
    }
    progress(&format!(
        "downloading {} packages: {}",
        wanted.len(),
        wanted.join(", ")
    ));
    run(Command::new("apt-get")
        .arg("download")
        .args(&wanted)
        .current_dir(&work))?;
    std::fs::create_dir_all(&root).map_err(|e| DatabaseError::Obtain(e.to_string()))?;
    let debs = std::fs::read_dir(&work).map_err(|e| DatabaseError::Obtain(e.to_string()))?;
    for deb in debs
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "deb"))
    {
        progress(&format!("unpacking {}", deb.file_name().to_string_lossy()));
        run(Command::new("dpkg-deb")
            .arg("-x")
            .arg(deb.path())
            .arg(&root))?;
    }
    let done = cache_dir.join("mariadb/root");
    std::fs::rename(&root, &done).map_err(|e| {
        DatabaseError::Obtain(format!("cannot move {} into place: {e}", root.display()))
    })?;
    progress(&format!("MariaDB unpacked into {}", done.display()));
    Ok(())
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn run(cmd: &mut Command) -> Result<String, DatabaseError> {
    let out = cmd
        .output()
        .map_err(|e| DatabaseError::Obtain(format!("{cmd:?}: {e}")))?;
    if !out.status.success() {
        return Err(DatabaseError::Obtain(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
