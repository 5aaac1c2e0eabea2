//! File modes and planted links: after `skycast-publisher init`, `player add` and a
//! puller sync, data directories are 0700 and databases and state files 0600; the
//! puller warns about a config others can read, and refuses to write through a
//! symlink planted at `partial/<id>.part` (issue 10, done-when 5).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use skycast_tests::{bin, example, example_music, file_id, write_planning, PublisherFixture};

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn assert_modes(root: &Path, dirs: &[&str], files: &[&str]) {
    for d in dirs {
        assert_eq!(mode(&root.join(d)), 0o700, "directory {}/{d}", root.display());
    }
    for f in files {
        assert_eq!(mode(&root.join(f)), 0o600, "file {}/{f}", root.display());
    }
}

#[test]
fn publisher_init_makes_owner_only_directories_and_database() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pub");
    let out = std::process::Command::new(bin("skycast-publisher"))
        .arg("init")
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_modes(
        &data,
        &["", "keys", "tls", "store.git"],
        &["publisher.sqlite", "keys/signing.key", "tls/server.key"],
    );
    for side in ["publisher.sqlite-wal", "publisher.sqlite-shm"] {
        if data.join(side).exists() {
            assert_eq!(mode(&data.join(side)), 0o600, "{side}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puller_data_is_owner_only_and_a_readable_config_is_reported() {
    let p = PublisherFixture::start().await;
    assert_modes(
        p.data.root(),
        &["", "keys", "tls", "store.git"],
        &["publisher.sqlite"],
    );
    let track = &example_music()[0];
    p.publish(&write_planning(&p.dir.path().join("v1"), &[track]));
    let pl = p.add_player("shop-1", "main", &p.url());
    pl.sync_ok().await;
    let (id, _) = file_id(&example(track));
    assert_modes(
        &pl.data,
        &["", "media", "partial", "versions", "versions/1"],
        &[
            "state.sqlite",
            "puller.lock",
            "versions/1/manifest.yaml",
            "versions/1/manifest.yaml.sig",
            &format!("media/{}", id.file_name()),
        ],
    );

    // The config holds the token: readable by others is reported, 0600 is not.
    std::fs::set_permissions(&pl.config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let warning = pl.status().await["config_warning"].clone();
    let text = warning.as_str().unwrap_or_default();
    assert!(
        text.contains("readable by group or others") && text.contains("chmod 600"),
        "{warning}"
    );
    let out = pl.command("sync").output().await.unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("readable by group or others"),
        "sync warns on stderr too"
    );
    std::fs::set_permissions(&pl.config, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(pl.status().await["config_warning"].is_null());
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlink_planted_at_a_partial_download_is_refused_and_its_target_untouched() {
    let p = PublisherFixture::start().await;
    let track = &example_music()[0];
    p.publish(&write_planning(&p.dir.path().join("v1"), &[track]));
    let pl = p.add_player("shop-1", "main", &p.url());
    let (id, _) = file_id(&example(track));

    // Someone with write access plants a link where the download will go.
    let target = p.dir.path().join("precious.conf");
    std::fs::write(&target, b"do not append here\n").unwrap();
    let partial = pl.data.join("partial").join(format!("{id}.part"));
    std::fs::create_dir_all(partial.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&target, &partial).unwrap();

    let out = pl.sync().await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "sync must refuse the link");
    assert!(
        err.contains("a symlink") && err.contains(&format!("{id}.part")),
        "{err}"
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"do not append here\n");
    assert_eq!(pl.current_version(), None);
    let status = pl.status().await;
    assert!(
        status["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("a symlink"),
        "{status}"
    );

    // Once the link is gone, the next sync downloads into a regular file.
    std::fs::remove_file(&partial).unwrap();
    pl.sync_ok().await;
    assert_eq!(pl.current_version(), Some(1));
    assert_eq!(std::fs::read(&target).unwrap(), b"do not append here\n");
    p.stop().await;
}

#[test]
fn player_add_out_writes_a_config_only_its_owner_can_read_or_registers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pub");
    let publisher = |args: &[&std::ffi::OsStr]| {
        std::process::Command::new(bin("skycast-publisher"))
            .args(args)
            .output()
            .unwrap()
    };
    let d = data.as_os_str();
    assert!(publisher(&["init".as_ref(), "--data".as_ref(), d])
        .status
        .success());

    let config = dir.path().join("shop-1.toml");
    let out = publisher(&[
        "player".as_ref(),
        "add".as_ref(),
        "--data".as_ref(),
        d,
        "--id".as_ref(),
        "shop-1".as_ref(),
        "--shop".as_ref(),
        "main".as_ref(),
        "--out".as_ref(),
        config.as_os_str(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.stdout.is_empty(),
        "the token is not printed when it goes to a file"
    );
    assert_eq!(mode(&config), 0o600);
    let text = std::fs::read_to_string(&config).unwrap();
    let table: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(table["player_id"].as_str(), Some("shop-1"));

    // A file that cannot be written registers nothing and leaves nothing behind.
    let nowhere = dir.path().join("missing-dir/shop-2.toml");
    let out = publisher(&[
        "player".as_ref(),
        "add".as_ref(),
        "--data".as_ref(),
        d,
        "--id".as_ref(),
        "shop-2".as_ref(),
        "--shop".as_ref(),
        "main".as_ref(),
        "--out".as_ref(),
        nowhere.as_os_str(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("missing-dir"), "{stderr}");
    let list = publisher(&["player".as_ref(), "list".as_ref(), "--data".as_ref(), d]);
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        listed.contains("shop-1") && !listed.contains("shop-2"),
        "{listed}"
    );

    // rotate-token replaces the file, still 0600, with the new token.
    let out = publisher(&[
        "player".as_ref(),
        "rotate-token".as_ref(),
        "--data".as_ref(),
        d,
        "--id".as_ref(),
        "shop-1".as_ref(),
        "--out".as_ref(),
        config.as_os_str(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rotated: toml::Table = toml::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert_ne!(rotated["token"], table["token"]);
    assert_eq!(mode(&config), 0o600);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
