//! Mirrors without a bucket: the endpoint and credentials rules, the retry
//! waits, and the status (lag, failing) from the queue's state.

use std::os::unix::fs::PermissionsExt;

use chrono::TimeDelta;

use super::*;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

fn open_db() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("p.sqlite")).unwrap();
    (dir, db)
}

fn spec(name: &str, endpoint: &str, credentials_file: Option<PathBuf>) -> MirrorSpec {
    MirrorSpec {
        name: name.into(),
        endpoint: endpoint.into(),
        bucket: "skycast".into(),
        region: "garage".into(),
        credentials_file,
    }
}

fn write_credentials(dir: &Path, mode: u32) -> PathBuf {
    let path = dir.join(format!("s3-{mode:o}.toml"));
    std::fs::write(
        &path,
        "access_key_id = \"GK123\"\nsecret_access_key = \"very-secret\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[test]
fn mirror_endpoints_allow_plain_http_only_to_loopback() {
    for ok in [
        "https://s3.example.com",
        "https://s3.example.com:9000/",
        "http://127.0.0.1:3900",
        "http://localhost:3900",
        "http://[::1]:3900",
    ] {
        assert!(check_endpoint(ok).is_ok(), "{ok}");
    }
    for (refused, why) in [
        ("http://s3.example.com", "loopback"),
        ("http://10.0.0.5:3900", "loopback"),
        ("ftp://127.0.0.1", "https"),
        ("https://key:secret@s3.example.com", "credentials"),
        ("https://s3.example.com/bucket", "--bucket"),
        ("s3.example.com", "URL"),
    ] {
        let e = check_endpoint(refused).unwrap_err().to_string();
        assert!(e.contains(why) && e.contains(refused), "{refused}: {e}");
    }
}

#[test]
fn mirror_credentials_file_readable_by_others_is_refused_and_its_secret_is_never_stored() {
    let (dir, db) = open_db();
    let now = at("2026-12-01T10:00:00Z");
    let open = write_credentials(dir.path(), 0o644);
    let e = add(
        &db,
        &spec("eu", "http://127.0.0.1:3900", Some(open.clone())),
        "ann",
        now,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("chmod 600") && e.contains(&open.display().to_string()),
        "{e}"
    );
    assert!(db.mirrors().unwrap().is_empty());

    let private = write_credentials(dir.path(), 0o600);
    let row = add(
        &db,
        &spec("eu", "http://127.0.0.1:3900/", Some(private.clone())),
        "ann",
        now,
    )
    .unwrap();
    assert_eq!(row.endpoint, "http://127.0.0.1:3900");
    assert_eq!(row.credentials_file.as_deref(), Some(private.to_str().unwrap()));
    let creds = Credentials::from_file(&private).unwrap();
    assert_eq!(creds.access_key_id, "GK123");
    assert!(
        !format!("{creds:?}").contains("very-secret"),
        "Debug hides the secret"
    );
    let stored = std::fs::read(db.path()).unwrap();
    assert!(
        !stored.windows(b"very-secret".len()).any(|w| w == b"very-secret"),
        "the database never holds the secret"
    );

    let again = add(&db, &spec("eu", "http://127.0.0.1:3900", None), "ann", now).unwrap_err();
    assert!(matches!(again, MirrorError::Exists(_)), "{again}");
    let bad = add(&db, &spec("EU west", "http://127.0.0.1:3900", None), "ann", now).unwrap_err();
    assert!(matches!(bad, MirrorError::BadName(_)), "{bad}");
    remove(&db, "eu").unwrap();
    assert!(matches!(
        remove(&db, "eu").unwrap_err(),
        MirrorError::NoSuchMirror(_)
    ));
}

#[test]
fn mirror_retry_waits_double_up_to_the_maximum() {
    assert_eq!(retry_after(1), RETRY_FIRST);
    assert_eq!(retry_after(2), RETRY_FIRST * 2);
    assert_eq!(retry_after(3), RETRY_FIRST * 4);
    assert_eq!(retry_after(50), RETRY_MAX);
    assert_eq!(retry_after(u32::MAX), RETRY_MAX);
}

#[test]
fn mirror_status_counts_the_lag_from_the_oldest_version_not_mirrored() {
    let (_dir, db) = open_db();
    let now = at("2026-12-01T10:00:00Z");
    add(&db, &spec("eu", "http://127.0.0.1:3900", None), "ann", now).unwrap();
    let versions = [
        (1, Some("2026-12-01T09:58:00Z".to_string())),
        (2, Some("2026-12-01T09:59:30Z".to_string())),
    ];
    db.enqueue_mirror_versions("eu", &versions, now).unwrap();
    let status = status_with_head(&db, 2, Some("2026-12-01T09:59:30Z"), now).unwrap();
    assert_eq!(
        (
            status[0].versions_behind,
            status[0].lag_secs,
            status[0].queue_len,
            status[0].failing
        ),
        (2, 120, 2, false)
    );
    for n in 1..=FAILING_AFTER_FAILURES {
        db.mirror_failed(
            "eu",
            "connection refused",
            now,
            now + TimeDelta::seconds(n.into()),
        )
        .unwrap();
    }
    let status = status_with_head(&db, 2, None, now).unwrap();
    assert!(status[0].failing);
    assert_eq!(status[0].last_error.as_deref(), Some("connection refused"));
    let text = render(&MirrorsStatus {
        head_version: 2,
        head_published_at: None,
        mirrors: status,
    });
    assert!(
        text.contains("FAILING") && text.contains("2 behind, lag 120 s"),
        "{text}"
    );

    db.mirror_succeeded("eu", 2, now).unwrap();
    let status = status_with_head(&db, 2, None, now).unwrap();
    assert_eq!(
        (
            status[0].versions_behind,
            status[0].lag_secs,
            status[0].queue_len,
            status[0].failing
        ),
        (0, 0, 0, false)
    );
    // Published while serve was not running: behind, counted from the head's publish.
    let status = status_with_head(&db, 3, Some("2026-12-01T09:59:50Z"), now).unwrap();
    assert_eq!((status[0].versions_behind, status[0].lag_secs), (1, 10));
}
