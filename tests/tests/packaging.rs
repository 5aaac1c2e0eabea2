//! The shop box's service and packages: both systemd units pass `systemd-analyze
//! verify`, the real puller tells systemd `READY=1` and then feeds its watchdog, and
//! the puller's `.deb` (built by `scripts/package.sh`) installs into a temporary
//! root with the right files, owners and modes, keeps its data and config through
//! an upgrade and a remove, and loses them only on `purge`.
//!
//! Nothing here touches this machine's root: the units are verified under
//! `--root`, the package is unpacked with `dpkg-deb -x`, and its maintainer scripts
//! run with `DPKG_ROOT` set to the temporary root, under `fakeroot`, with the
//! systemd helpers replaced by recorders; as root the scripts also run as `nobody`,
//! so a wrong path could not write outside the temporary root.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use skycast_tests::bin;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives inside the workspace")
        .to_path_buf()
}

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `target` (a file) at `link`: a hard link when possible, else a copy.
fn place(target: &Path, link: &Path) {
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    if std::fs::hard_link(target, link).is_err() {
        std::fs::copy(target, link).unwrap();
    }
}

#[test]
fn both_units_pass_systemd_analyze_verify_with_their_binaries_in_place() {
    // A root holding systemd's own units (targets the units order after), the two
    // binaries at their ExecStart paths, and the units as the packages install them.
    let root = tempfile::tempdir().unwrap();
    let units = root.path().join("usr/lib/systemd/system");
    std::fs::create_dir_all(&units).unwrap();
    for entry in
        std::fs::read_dir("/usr/lib/systemd/system").expect("systemd's units in /usr/lib/systemd/system")
    {
        let entry = entry.unwrap();
        let to = units.join(entry.file_name());
        let meta = std::fs::symlink_metadata(entry.path()).unwrap();
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(entry.path()).unwrap();
            std::os::unix::fs::symlink(target, &to).unwrap();
        } else if meta.is_file() {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
    let workspace = workspace_root();
    let mut unit_paths = Vec::new();
    for (binary, unit) in [
        ("skycast-puller", "puller/debian/skycast-puller.service"),
        ("skycast-publisher", "publisher/debian/skycast-publisher.service"),
    ] {
        place(&bin(binary), &root.path().join("usr/bin").join(binary));
        let installed = units.join(Path::new(unit).file_name().unwrap());
        std::fs::copy(workspace.join(unit), &installed).unwrap();
        unit_paths.push(installed);
    }
    let output = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.path().display()))
        .args(&unit_paths));
    // verify exits 0 on unknown keys too, with a warning: any word about our units fails.
    let stderr = String::from_utf8_lossy(&output.stderr);
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("skycast")).collect();
    assert!(
        ours.is_empty(),
        "systemd-analyze verify warns:\n{}",
        ours.join("\n")
    );

    // The sandbox as systemd rates it (0 = locked down, 10 = fully exposed).
    for unit in &unit_paths {
        let output = run(Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(format!("--root={}", root.path().display()))
            .arg(unit));
        let report = String::from_utf8_lossy(&output.stdout);
        let level: f64 = report
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|rest| rest.split(':').nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
        println!("{}: exposure {level}", unit.display());
        assert!(level <= 2.0, "{} is exposed at {level} (of 10)", unit.display());
    }

    // The promises the issue makes of the units, beyond their syntax.
    let puller = std::fs::read_to_string(workspace.join("puller/debian/skycast-puller.service")).unwrap();
    for line in [
        "Type=notify",
        "Restart=always",
        "RestartSec=1s",
        "WatchdogSec=10s",
        "StateDirectory=skycast",
        "ProtectSystem=strict",
        "User=skycast",
        "SupplementaryGroups=audio",
        "DeviceAllow=char-alsa rw",
        "ExecStart=/usr/bin/skycast-puller run --config /etc/skycast/puller.toml --data /var/lib/skycast/puller",
    ] {
        assert!(puller.lines().any(|l| l == line), "skycast-puller.service lacks `{line}`");
    }
    let publisher =
        std::fs::read_to_string(workspace.join("publisher/debian/skycast-publisher.service")).unwrap();
    for line in [
        "Type=notify",
        "Restart=always",
        "StateDirectory=skycast",
        "ProtectSystem=strict",
    ] {
        assert!(
            publisher.lines().any(|l| l == line),
            "skycast-publisher.service lacks `{line}`"
        );
    }
}

/// Kills the child if the test fails before it stops it.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_real_puller_says_ready_then_feeds_the_watchdog_and_says_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let config = dir.path().join("puller.toml");
    // A player with a shop and no server to reach (nothing listens on port 1): it
    // plays nothing yet, but its player thread runs, which is what feeds the watchdog.
    std::fs::write(
        &config,
        format!(
            "player_id = \"box-1\"\nshop = \"main\"\nserver = \"https://127.0.0.1:1\"\ntoken = \"t\"\n\
             data = \"data\"\ntrusted_keys = [\"{}\"]\noutput = \"null\"\n",
            skycast_schema::SecretKey::from_seed([5; 32]).public()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let started = Instant::now();
    let child = Child(
        Command::new(bin("skycast-puller"))
            .args(["run", "--config"])
            .arg(&config)
            .env("NOTIFY_SOCKET", &socket_path)
            // 400 ms: pings every 100 ms while the player beats.
            .env("WATCHDOG_USEC", "400000")
            .env_remove("WATCHDOG_PID")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let mut seen = Vec::new();
    let deadline = started + Duration::from_secs(60);
    let mut buf = [0u8; 1024];
    while !(seen.iter().any(|s: &String| s.starts_with("READY=1"))
        && seen.iter().filter(|s| *s == "WATCHDOG=1").count() >= 3)
    {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no READY=1 then 3 WATCHDOG=1 within 60 s; got {seen:?}"
        );
        socket.set_read_timeout(Some(left)).unwrap();
        match socket.recv(&mut buf) {
            Ok(n) => seen.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("cannot read the notify socket: {e}"),
        }
    }
    println!(
        "READY=1 and 3 watchdog pings {} ms after the start",
        started.elapsed().as_millis()
    );
    let ready = seen.iter().position(|s| s.starts_with("READY=1")).unwrap();
    let first_ping = seen.iter().position(|s| s == "WATCHDOG=1").unwrap();
    assert!(
        ready < first_ping,
        "READY=1 comes before the first ping: {seen:?}"
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no STOPPING=1 within 30 s of SIGTERM; got {seen:?}"
        );
        socket.set_read_timeout(Some(left)).unwrap();
        if let Ok(n) = socket.recv(&mut buf) {
            if buf[..n].starts_with(b"STOPPING=1") {
                break;
            }
        }
    }
    let mut child = child;
    let status = child.0.wait().unwrap();
    assert!(status.success(), "a SIGTERM is a clean stop: {status}");
}

/// `bash scripts/package.sh --fast`: release builds are incremental, so a second
/// run costs the packaging only. Returns the folder it printed.
fn build_packages() -> PathBuf {
    let output = run(Command::new("bash")
        .arg("scripts/package.sh")
        .arg("--fast")
        .current_dir(workspace_root()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let folder = stdout
        .lines()
        .last()
        .expect("package.sh prints its folder")
        .trim();
    PathBuf::from(folder)
}

fn one_deb(folder: &Path, package: &str) -> PathBuf {
    let version = env!("CARGO_PKG_VERSION");
    let debs: Vec<PathBuf> = std::fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{package}_{version}-")) && n.ends_with(".deb"))
        })
        .collect();
    assert_eq!(
        debs.len(),
        1,
        "one {package} {version} package in {}: {debs:?}",
        folder.display()
    );
    debs.into_iter().next().unwrap()
}

/// `dpkg-deb -c`: path → (mode text, owner/group), as recorded in the package.
fn contents(deb: &Path) -> BTreeMap<String, (String, String)> {
    let output = run(Command::new("dpkg-deb").arg("-c").arg(deb));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let path = fields
                .get(5)?
                .trim_start_matches('.')
                .trim_end_matches('/')
                .to_string();
            Some((path, (fields[0].to_string(), fields[1].to_string())))
        })
        .collect()
}

/// A recorder in place of a systemd helper: it appends its name and arguments to `log`.
fn recorder(dir: &Path, name: &str, log: &Path) {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!("#!/bin/sh\necho \"{name} $*\" >> '{}'\nexit 0\n", log.display()),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The lifecycle dpkg would run (install, upgrade to the same version, remove,
/// purge), printing the owners and modes seen after each step.
const LIFECYCLE: &str = r#"
set -eu
R="$DPKG_ROOT"
show() { for p in "$@"; do if [ -e "$R$p" ]; then echo "$STEP $(stat -c '%u:%g %a' "$R$p") $p"; else echo "$STEP absent $p"; fi; done; }
dpkg-deb -x "$DEB" "$R"
STEP=install
sh "$CTL/postinst" configure
show /var/lib/skycast /var/lib/skycast/puller /etc/skycast
# The admin's config (player add's output) and the player's data.
printf 'player_id = "box-1"\n' > "$R/etc/skycast/puller.toml"
chmod 0644 "$R/etc/skycast/puller.toml"
printf 'the shop state\n' > "$R/var/lib/skycast/puller/state.sqlite"
chown --reference="$R/var/lib/skycast/puller" "$R/var/lib/skycast/puller/state.sqlite"
STEP=upgrade
sh "$CTL/prerm" upgrade "$VERSION"
dpkg-deb -x "$DEB" "$R"
sh "$CTL/postrm" upgrade "$VERSION"
sh "$CTL/postinst" configure "$VERSION"
show /var/lib/skycast/puller /var/lib/skycast/puller/state.sqlite /etc/skycast/puller.toml
echo "$STEP content $(cat "$R/var/lib/skycast/puller/state.sqlite")"
STEP=remove
sh "$CTL/prerm" remove
sh "$CTL/postrm" remove
show /var/lib/skycast/puller/state.sqlite /etc/skycast/puller.toml
STEP=purge
sh "$CTL/postrm" purge
show /var/lib/skycast/puller /etc/skycast/puller.toml /var/lib/skycast
"#;

#[test]
fn the_puller_package_installs_into_a_temporary_root_and_only_purge_removes_its_data() {
    let folder = build_packages();
    let deb = one_deb(&folder, "skycast-puller");
    let publisher_deb = one_deb(&folder, "skycast-publisher");
    println!("packages: {} and {}", deb.display(), publisher_deb.display());

    // Files, modes and owners as the package records them.
    let files = contents(&deb);
    for (path, mode) in [
        ("/usr/bin/skycast-puller", "-rwxr-xr-x"),
        ("/lib/systemd/system/skycast-puller.service", "-rw-r--r--"),
        ("/usr/lib/sysusers.d/skycast-puller.conf", "-rw-r--r--"),
        ("/etc/skycast/puller.toml.example", "-rw-r--r--"),
    ] {
        let found = files
            .get(path)
            .or_else(|| files.get(&format!("/usr{path}")))
            .unwrap_or_else(|| panic!("{path} is not in the package: {:?}", files.keys()));
        assert_eq!(found.0, mode, "{path}");
        assert!(
            matches!(found.1.as_str(), "root/root" | "0/0"),
            "{path} belongs to root: {found:?}"
        );
    }
    assert!(
        !files.keys().any(|p| p == "/etc/skycast/puller.toml"),
        "no real config (with a token) is shipped"
    );
    let publisher_files = contents(&publisher_deb);
    let env = publisher_files
        .get("/etc/skycast/publisher.env")
        .map(|(mode, _)| mode.as_str());
    assert_eq!(env, Some("-rw-------"), "the publisher's settings are private");

    let fields = run(Command::new("dpkg-deb")
        .arg("-f")
        .arg(&deb)
        .args(["Package", "Depends"]));
    let fields = String::from_utf8_lossy(&fields.stdout);
    assert!(fields.contains("Package: skycast-puller"), "{fields}");
    assert!(
        fields.contains("systemd"),
        "the package depends on systemd: {fields}"
    );

    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    let control = work.path().join("control");
    let stubs = work.path().join("stubs");
    let log = work.path().join("systemd-helpers.log");
    for dir in [&root, &control, &stubs] {
        std::fs::create_dir_all(dir).unwrap();
    }
    // The target root is a system with an /etc (systemd-sysusers writes passwd there).
    std::fs::create_dir_all(root.join("etc")).unwrap();
    // A copy inside the work folder, which `nobody` may read.
    let deb = {
        let copy = work.path().join(deb.file_name().unwrap());
        std::fs::copy(&deb, &copy).unwrap();
        copy
    };
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap_or_default();
    assert!(
        conffiles.contains("/etc/skycast/puller.toml.example"),
        "conffiles: {conffiles}"
    );
    let postrm = std::fs::read_to_string(control.join("postrm")).unwrap();
    assert!(
        postrm.contains("if [ \"$1\" = \"purge\" ]; then"),
        "postrm deletes only on purge"
    );
    for helper in ["deb-systemd-helper", "deb-systemd-invoke", "systemctl"] {
        recorder(&stubs, helper, &log);
    }
    std::fs::write(&log, "").unwrap();

    let host_passwd = std::fs::read("/etc/passwd").unwrap();
    let mut lifecycle = Command::new("fakeroot");
    // /proc/self belongs to this process's effective user.
    let as_root = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0;
    if as_root {
        // As `nobody`, the scripts cannot write anything of this machine's outside the temporary root.
        run(Command::new("chown")
            .args(["-R", "nobody:nogroup"])
            .arg(work.path()));
        lifecycle = Command::new("setpriv");
        lifecycle.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "fakeroot"]);
    }
    let path = format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", stubs.display());
    let output = run(lifecycle
        .args(["--", "sh", "-c", LIFECYCLE])
        .env_clear()
        .env("PATH", path)
        .env("DPKG_ROOT", &root)
        .env("DEB", &deb)
        .env("CTL", &control)
        .env("VERSION", env!("CARGO_PKG_VERSION")));
    let seen = String::from_utf8_lossy(&output.stdout).into_owned();
    println!("{seen}");
    assert_eq!(
        std::fs::read("/etc/passwd").unwrap(),
        host_passwd,
        "this machine's users are untouched"
    );

    // The user the scripts made, in the temporary root's own passwd.
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let user: Vec<&str> = passwd
        .lines()
        .find(|l| l.starts_with("skycast:"))
        .unwrap_or_else(|| panic!("no skycast user in the root's passwd:\n{passwd}"))
        .split(':')
        .collect();
    let (uid, gid) = (user[2], user[3]);
    assert_eq!(user[5], "/var/lib/skycast", "its home is the data directory");
    assert_eq!(user[6], "/usr/sbin/nologin");
    let owned = |mode: &str| format!("{uid}:{gid} {mode}");
    let expected = [
        format!("install {} /var/lib/skycast", owned("700")),
        format!("install {} /var/lib/skycast/puller", owned("700")),
        format!("install 0:{gid} 750 /etc/skycast"),
        format!("upgrade {} /var/lib/skycast/puller", owned("700")),
        // The data and the config survive the upgrade; the config is made private.
        format!("upgrade {} /var/lib/skycast/puller/state.sqlite", owned("644")),
        format!("upgrade {} /etc/skycast/puller.toml", owned("600")),
        "upgrade content the shop state".to_string(),
        format!("remove {} /var/lib/skycast/puller/state.sqlite", owned("644")),
        format!("remove {} /etc/skycast/puller.toml", owned("600")),
        "purge absent /var/lib/skycast/puller".to_string(),
        "purge absent /etc/skycast/puller.toml".to_string(),
        "purge absent /var/lib/skycast".to_string(),
    ];
    for line in &expected {
        assert!(seen.lines().any(|l| l == line), "expected `{line}` in:\n{seen}");
    }
    let helpers = std::fs::read_to_string(&log).unwrap();
    assert!(
        helpers
            .lines()
            .any(|l| l == "deb-systemd-helper enable skycast-puller.service"),
        "the unit is enabled on install:\n{helpers}"
    );
    assert!(
        helpers
            .lines()
            .any(|l| l == "deb-systemd-helper purge skycast-puller.service"),
        "purge forgets the unit's enablement:\n{helpers}"
    );
}
