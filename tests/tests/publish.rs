//! The publisher's command line as an operator uses it: init, publish (refusing
//! anything that is not a whole MP3, storing nothing then), history, diff, rollback.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use skycast_tests::{bin, example, example_music, write_planning};

fn publisher(args: &[&str], data: &Path) -> Output {
    let mut c = std::process::Command::new(bin("skycast-publisher"));
    c.arg(args[0])
        .arg("--data")
        .arg(data)
        .args(&args[1..])
        .env("SKYCAST_ADMIN_PASSWORD", "admin-password");
    c.output().unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn object_count(store: &Path) -> usize {
    walk(&store.join("objects"))
}

fn walk(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| if e.path().is_dir() { walk(&e.path()) } else { 1 })
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn init_keeps_secrets_private_and_prints_the_generated_password_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pub");
    let out = std::process::Command::new(bin("skycast-publisher"))
        .arg("init")
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    let stdout = ok(out);
    assert!(stdout.contains("password (shown once"), "{stdout}");
    for secret in ["keys/signing.key", "tls/server.key", "tls/ca.key"] {
        let mode = std::fs::metadata(data.join(secret)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{secret}");
    }
    let again = std::process::Command::new(bin("skycast-publisher"))
        .arg("init")
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        !again.status.success(),
        "init never overwrites an existing data directory"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds"));
}

#[test]
fn broken_media_is_refused_with_a_clear_message_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pub");
    ok(publisher(&["init"], &data));
    let music = example_music();
    let planning = write_planning(&dir.path().join("plan"), &[&music[0], &music[1]]);
    ok(publisher(
        &["publish", "--planning", planning.to_str().unwrap()],
        &data,
    ));
    let objects_before = object_count(&data.join("store.git"));

    let good = std::fs::read(example(&music[1])).unwrap();
    let mut wav = b"RIFF\x24\x00\x00\x00WAVEfmt ".to_vec();
    wav.resize(4000, 0);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", good[..good.len() / 3].to_vec(), "truncated"),
        ("renamed WAV", wav, "WAV"),
        ("empty", Vec::new(), "empty"),
        ("text", b"<html>not audio</html>".to_vec(), "does not start"),
    ];
    for (what, bytes, words) in cases {
        // A fresh file beside the good ones: the new track of the next version.
        let plan_dir = dir.path().join(format!("bad-{}", what.replace(' ', "-")));
        let planning = write_planning(&plan_dir, &[&music[0], &music[1]]);
        std::fs::write(plan_dir.join(&music[1]), &bytes).unwrap();
        let out = publisher(&["publish", "--planning", planning.to_str().unwrap()], &data);
        assert!(!out.status.success(), "{what} must be refused");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&music[1]) && err.contains(words), "{what}: {err}");
        assert_eq!(
            object_count(&data.join("store.git")),
            objects_before,
            "{what}: nothing stored"
        );
    }
    assert!(
        ok(publisher(&["history"], &data)).starts_with("v1 "),
        "head is still version 1"
    );
}

#[test]
fn planning_errors_name_the_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pub");
    ok(publisher(&["init"], &data));
    let planning = write_planning(&dir.path().join("plan"), &[&example_music()[0]]);
    let text = std::fs::read_to_string(&planning)
        .unwrap()
        .replace("playlist: allday", "playlist: nightly");
    std::fs::write(&planning, text).unwrap();
    let out = publisher(&["publish", "--planning", planning.to_str().unwrap()], &data);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("planning.yaml") && err.contains("schedule[0].playlist") && err.contains("nightly"),
        "{err}"
    );
}

#[test]
fn history_diff_and_rollback_tell_who_changed_what_and_never_lower_the_version() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pub");
    ok(publisher(&["init"], &data));
    let music = example_music();
    let v1 = write_planning(&dir.path().join("v1"), &[&music[0], &music[1]]);
    let v2 = write_planning(
        &dir.path().join("v2"),
        &[&music[0], &music[1], "music/extra-e.mp3"],
    );
    ok(publisher(
        &[
            "publish",
            "--planning",
            v1.to_str().unwrap(),
            "--author",
            "alice",
            "--message",
            "Pilot",
        ],
        &data,
    ));
    ok(publisher(
        &[
            "publish",
            "--planning",
            v2.to_str().unwrap(),
            "--author",
            "bob",
            "--message",
            "Add a track",
        ],
        &data,
    ));

    let diff = ok(publisher(&["diff", "1", "2"], &data));
    assert!(diff.contains("+ \"extra-e\""), "media added by title: {diff}");
    assert!(
        diff.contains("playlist \"allday\": 2 tracks → 3 tracks"),
        "{diff}"
    );

    let out = ok(publisher(&["rollback", "--to", "1", "--author", "carol"], &data));
    assert!(
        out.contains("published version 3 with the content of version 1"),
        "{out}"
    );
    let history = ok(publisher(&["history"], &data));
    let lines: Vec<&str> = history.lines().collect();
    assert!(
        lines[0].starts_with("v3")
            && lines[0].contains("carol")
            && lines[0].contains("Roll back to version 1")
    );
    assert!(
        lines[1].contains("bob") && lines[1].contains("Add a track") && lines[2].contains("alice"),
        "{history}"
    );

    let same = ok(publisher(&["diff", "1", "3"], &data));
    assert!(
        same.contains("same content"),
        "rollback restores version 1's content exactly: {same}"
    );
    ok(publisher(&["verify"], &data));

    let missing = publisher(&["rollback", "--to", "9"], &data);
    assert!(
        !missing.status.success()
            && String::from_utf8_lossy(&missing.stderr).contains("version 9 does not exist")
    );
}

#[test]
fn lock_files_left_by_a_killed_publish_do_not_block_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pub");
    ok(publisher(&["init"], &data));
    let planning = write_planning(&dir.path().join("plan"), &[&example_music()[0]]);
    ok(publisher(
        &["publish", "--planning", planning.to_str().unwrap()],
        &data,
    ));
    // What libgit2 leaves when killed between writing a ref's lock file and renaming it.
    let store = data.join("store.git");
    std::fs::write(
        store.join("refs/heads/main.lock"),
        "0000000000000000000000000000000000000000\n",
    )
    .unwrap();
    std::fs::write(store.join("refs/tags/v2.lock"), "").unwrap();

    let out = ok(publisher(
        &["publish", "--planning", planning.to_str().unwrap()],
        &data,
    ));
    assert!(out.contains("published version 2"), "{out}");
    assert!(!store.join("refs/heads/main.lock").exists() && !store.join("refs/tags/v2.lock").exists());
    ok(publisher(&["verify"], &data));
}

/// `player add --shop NAME` refuses exactly the names a manifest refuses as a shop,
/// so a registered player's shop can always be published (and a refused one never
/// gets a config that no manifest could serve).
#[test]
fn player_add_and_the_manifest_agree_on_shop_names() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pub");
    ok(publisher(&["init"], &data));
    let player_add = |id: &str, shop_args: &[&str]| {
        std::process::Command::new(bin("skycast-publisher"))
            .args(["player", "add", "--data"])
            .arg(&data)
            .args(["--id", id])
            .args(shop_args)
            .output()
            .unwrap()
    };
    let manifest_with_shop = |shop: &str| {
        format!(
            "schema: skycast/v1\nversion: 1\npublished_at: 2026-11-22T09:14:03Z\n\
             expires_at: 2026-12-22T09:14:03Z\npublished_by: alice\ntimezone: Europe/Paris\n\
             media: []\nshops:\n  {shop:?}: {{}}\n"
        )
    };

    // The spelling of the issue: clap takes `-x` for a flag and refuses it.
    let out = player_add("p0", &["--shop", "-x"]);
    assert!(!out.status.success(), "`--shop -x` must be refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("'-x'"));

    // Each row: a shop name, and whether both the CLI and the manifest take it.
    let table = [
        ("main", true),
        ("main-2", true),
        ("9th_street", true),
        ("-x", false),
        ("_x", false),
        ("Main", false),
        ("all", false),
        ("tag:main", false),
        ("a b", false),
        ("", false),
    ];
    let mut accepted = Vec::new();
    for (i, (shop, ok_both)) in table.into_iter().enumerate() {
        let out = player_add(&format!("p{}", i + 1), &[&format!("--shop={shop}")]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.success(),
            ok_both,
            "player add --shop={shop}: {stderr}"
        );
        let manifest = skycast_schema::Manifest::parse(manifest_with_shop(shop).as_bytes());
        assert_eq!(
            manifest.is_ok(),
            ok_both,
            "manifest with shop {shop:?}: {manifest:?}"
        );
        if ok_both {
            let config = String::from_utf8_lossy(&out.stdout);
            assert!(config.contains(&format!("shop = \"{shop}\"")), "{config}");
            accepted.push(shop);
        } else {
            assert!(stderr.contains(&format!("shop `{shop}`")), "{stderr}");
            let what = if shop == "all" {
                "reserved"
            } else {
                "starting with a letter or digit"
            };
            assert!(stderr.contains(what), "{stderr}");
        }
    }

    // The names the CLI took publish as shops through the real CLI too.
    let plan_dir = dir.path().join("plan");
    let planning = write_planning(&plan_dir, &[&example_music()[0]]);
    // `main` is in the planning already.
    let shops: String = accepted
        .iter()
        .filter(|s| **s != "main")
        .map(|s| format!("  {s}: {{}}\n"))
        .collect();
    let text = std::fs::read_to_string(&planning)
        .unwrap()
        .replace("shops:\n", &format!("shops:\n{shops}"));
    std::fs::write(&planning, text).unwrap();
    let out = ok(publisher(
        &["publish", "--planning", planning.to_str().unwrap()],
        &data,
    ));
    assert!(out.contains("published version 1"), "{out}");
}
