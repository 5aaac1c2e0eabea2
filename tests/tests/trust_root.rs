//! The signed trust root (issue 13) with the real binaries: `key rotate`,
//! `root rotate` with a threshold of 2 of 3 and `key revoke`, followed by pullers
//! enrolled before the change (one offline across two rotations), the forged
//! roots and manifests each refused with a message naming what failed, and
//! `verify` passing on the store and on a plain `git clone`.

use std::path::{Path, PathBuf};
use std::process::Output;

use skycast_schema::{sign_root, Root, SecretKey};
use skycast_tests::proxy::{Fault, Proxy};
use skycast_tests::{bin, example_music, write_planning, PublisherFixture, Puller};

fn publisher(args: &[&str]) -> Output {
    std::process::Command::new(bin("skycast-publisher"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "command failed: {text}");
    text
}

fn data_arg(p: &PublisherFixture) -> String {
    p.data.root().display().to_string()
}

/// The root key file `init` wrote (one key, threshold 1).
fn init_root_key(p: &PublisherFixture) -> PathBuf {
    let dir = p.data.root().join("root-keys");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "init writes one root key by default: {files:?}");
    files.remove(0)
}

fn secret(path: &Path) -> SecretKey {
    SecretKey::from_file_text(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `key generate` `n` key files in `dir`.
fn generate(dir: &Path, prefix: &str, n: usize) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    (0..n)
        .map(|i| {
            let path = dir.join(format!("{prefix}-{i}.key"));
            ok(publisher(&["key", "generate", "--out", path.to_str().unwrap()]));
            path
        })
        .collect()
}

/// `skycast-publisher <words> --data <p> <flag> <file>...` for each `(flag, files)`.
fn on_data(p: &PublisherFixture, words: &[&str], files: &[(&str, &[PathBuf])]) -> Output {
    let mut args: Vec<String> = words.iter().map(|w| w.to_string()).collect();
    args.extend(["--data".to_string(), data_arg(p)]);
    for (flag, paths) in files {
        for path in *paths {
            args.extend([flag.to_string(), path.display().to_string()]);
        }
    }
    std::process::Command::new(bin("skycast-publisher"))
        .args(&args)
        .output()
        .unwrap()
}

fn publish_next(p: &PublisherFixture, name: &str, track: usize) -> u64 {
    let music = example_music();
    p.publish(&write_planning(
        &p.dir.path().join(name),
        &[&music[track % music.len()]],
    ))
    .version
}

async fn sync_refused(pl: &Puller, words: &[&str]) -> String {
    let out = pl.sync().await;
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "sync should fail, said: {text}");
    for w in words {
        assert!(text.contains(w), "expected `{w}` in: {text}");
    }
    text
}

fn verify_passes(p: &PublisherFixture) {
    ok(publisher(&["verify", "--data", &data_arg(p)]));
    let clone = p.dir.path().join("clone");
    let status = std::process::Command::new("git")
        .args(["clone", "--quiet"])
        .arg(p.data.store_path())
        .arg(&clone)
        .status()
        .unwrap();
    assert!(status.success());
    let root1 = p.data.root().join("roots/1.yaml");
    let said = ok(publisher(&[
        "verify",
        "--data",
        clone.to_str().unwrap(),
        "--root",
        root1.to_str().unwrap(),
    ]));
    assert!(said.contains("every signature and media hash checks"), "{said}");
    std::fs::remove_dir_all(&clone).unwrap();
}

/// The manifest of version `v` as served, signed again with `key`.
fn resigned_by(p: &PublisherFixture, v: u64, key: &SecretKey) -> Fault {
    let manifest = p.data.store().unwrap().version_file(v, "manifest.yaml").unwrap();
    let signature = key.sign(&manifest).into_bytes();
    Fault::ReplaceVersion { manifest, signature }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_key_rotate_the_new_key_is_followed_and_the_old_key_is_refused() {
    let p = PublisherFixture::start().await;
    let proxy = Proxy::start(&p).await;
    publish_next(&p, "v1", 0);
    let pl = p.add_player("main-1", "main", &proxy.url());
    pl.sync_ok().await;
    let old_key = secret(&p.data.secret_key_path());

    let said = ok(on_data(
        &p,
        &["key", "rotate"],
        &[("--root-key", &[init_root_key(&p)])],
    ));
    assert!(said.contains("root 2 written"), "{said}");
    assert!(said.contains("published version 2"), "{said}");
    let new_key = secret(&p.data.secret_key_path());
    assert_ne!(new_key.public(), old_key.public());

    // The re-signed head (new key, root 2) and then a new publish are taken.
    pl.sync_ok().await;
    assert_eq!(pl.current_version(), Some(2));
    let v3 = publish_next(&p, "v3", 1);
    pl.sync_ok().await;
    assert_eq!(pl.current_version(), Some(v3));

    // The old key signing a version after the rotation is refused, naming it.
    let v4 = publish_next(&p, "v4", 2);
    proxy.set(resigned_by(&p, v4, &old_key));
    let old_id = old_key.public().id().to_string();
    sync_refused(&pl, &["retired", &old_id]).await;
    assert_eq!(pl.current_version(), Some(v3));
    proxy.set(Fault::None);
    pl.sync_ok().await;
    assert_eq!(pl.current_version(), Some(v4));

    verify_passes(&p);
    p.stop().await;
}

/// Root `version` made from `base` with root keys `keys` (threshold 2), signed by `signers`.
fn forged_root(base: &Root, version: u64, keys: &[SecretKey], signers: &[&SecretKey]) -> Fault {
    let mut root = base.clone();
    root.version = version;
    root.root_keys = keys.iter().map(SecretKey::public).collect();
    root.root_threshold = 2;
    let bytes = root.to_yaml().into_bytes();
    let signatures = sign_root(&bytes, signers).into_bytes();
    Fault::ServeRoot {
        version,
        root: bytes,
        signatures,
    }
}

fn newest_root(p: &PublisherFixture) -> Root {
    let chain = skycast_publisher::trust::local_chain(&p.data).unwrap().unwrap();
    chain.root().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_rotate_two_of_three_refuses_short_or_skipped_roots_and_an_offline_puller_follows_two_rotations()
{
    let p = PublisherFixture::start().await;
    let proxy = Proxy::start(&p).await;
    publish_next(&p, "v1", 0);
    let online = p.add_player("main-1", "main", &proxy.url());
    let offline = p.add_player("main-2", "main", &p.url());
    online.sync_ok().await;
    offline.sync_ok().await;

    // From the init's single root key to 2 of 3.
    let keys = p.dir.path().join("offline-keys");
    let g = generate(&keys, "g", 3);
    let rotate_root = ["root", "rotate", "--threshold", "2"];
    let first = on_data(
        &p,
        &rotate_root,
        &[("--root-key", &[init_root_key(&p)]), ("--new-root-key", &g)],
    );
    assert!(ok(first).contains("root 2 written"));
    online.sync_ok().await;
    assert_eq!(online.current_version(), Some(2));

    // The CLI itself refuses a rotation one old key short.
    let h = generate(&keys, "h", 3);
    let out = on_data(
        &p,
        &rotate_root,
        &[("--root-key", &g[..1]), ("--new-root-key", &h)],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 valid signature(s) of the 2"));

    // Forged roots served to a puller: each refused, naming the shortfall.
    let base = newest_root(&p);
    let (gs, hs): (Vec<SecretKey>, Vec<SecretKey>) = (
        g.iter().map(|k| secret(k)).collect(),
        h.iter().map(|k| secret(k)).collect(),
    );
    let one_old = forged_root(&base, 3, &hs, &[&gs[0], &hs[0], &hs[1]]);
    proxy.set(one_old);
    sync_refused(
        &online,
        &["root 3 carries 1 valid signature(s) of the 2", "previous root's"],
    )
    .await;
    proxy.set(forged_root(&base, 3, &hs, &[&hs[0], &hs[1], &hs[2]]));
    sync_refused(&online, &["root 3 carries 0 valid signature(s) of the 2"]).await;
    let skipped = match forged_root(&base, 4, &hs, &[&gs[0], &gs[1], &hs[0], &hs[1]]) {
        Fault::ServeRoot { root, signatures, .. } => Fault::ServeRoot {
            version: 3,
            root,
            signatures,
        },
        _ => unreachable!(),
    };
    proxy.set(skipped);
    sync_refused(
        &online,
        &["root 4 does not follow root 2", "only root 3 may come next"],
    )
    .await;
    proxy.set(Fault::None);
    assert_eq!(online.current_version(), Some(2));

    // The real chain: rotate to the h keys with two g keys, then a key rotation.
    let good = on_data(
        &p,
        &rotate_root,
        &[("--root-key", &g[1..]), ("--new-root-key", &h)],
    );
    assert!(ok(good).contains("root 3 written"));
    let rotate = on_data(&p, &["key", "rotate"], &[("--root-key", &h[..2])]);
    assert!(ok(rotate).contains("root 4 written"));
    let head = publish_next(&p, "v5", 1);

    // The puller that was offline across the rotations follows 2, 3, 4 at once.
    offline.sync_ok().await;
    assert_eq!(offline.current_version(), Some(head));
    let kept: Vec<String> = (2..=4).map(|n| format!("{n}.yaml")).collect();
    for name in &kept {
        assert!(offline.data.join("roots").join(name).exists(), "{name} kept");
    }
    online.sync_ok().await;
    assert_eq!(online.current_version(), Some(head));
    verify_passes(&p);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_stolen_key_signing_after_the_revocation_is_refused_by_every_puller() {
    let p = PublisherFixture::start().await;
    let proxy = Proxy::start(&p).await;
    publish_next(&p, "v1", 0);
    let before = p.add_player("main-1", "main", &proxy.url());
    before.sync_ok().await;
    let stolen = secret(&p.data.secret_key_path());
    let stolen_id = stolen.public().id().to_string();

    let after = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let revoke = [
        "key",
        "revoke",
        "--key",
        &stolen_id,
        "--after",
        &after,
        "--reason",
        "laptop stolen",
    ];
    let said = ok(on_data(&p, &revoke, &[("--root-key", &[init_root_key(&p)])]));
    assert!(said.contains("REVOKED"), "{said}");
    // The stolen key was the online one: a new key signed the re-signed head.
    assert_ne!(secret(&p.data.secret_key_path()).public(), stolen.public());
    before.sync_ok().await;
    let enrolled_after = p.add_player("main-2", "main", &proxy.url());
    enrolled_after.sync_ok().await;

    // The thief signs the next version, dated after the revocation.
    let v = publish_next(&p, "v3", 1);
    proxy.set(resigned_by(&p, v, &stolen));
    for pl in [&before, &enrolled_after] {
        let said = sync_refused(pl, &["revoked", &stolen_id, "laptop stolen"]).await;
        assert!(said.contains("possible attack"), "{said}");
        assert_eq!(pl.current_version(), Some(2));
    }
    proxy.set(Fault::None);
    before.sync_ok().await;
    assert_eq!(before.current_version(), Some(v));
    verify_passes(&p);
    p.stop().await;
}

/// Fetches `/v1/head` from `url` trusting only the CA in `ca_pem`: whether the
/// server's certificate chains to it.
async fn served_by_ca(url: &str, ca_pem: &[u8]) -> bool {
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem).unwrap())
        .build()
        .unwrap();
    // 401 without a token: the TLS handshake, the part that matters, succeeded.
    client.get(format!("{url}/v1/head")).send().await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_renew_and_a_ca_change_through_the_root_keep_pullers_syncing_without_a_config_change() {
    let p = PublisherFixture::start().await;
    publish_next(&p, "v1", 0);
    let pl = p.add_player("main-1", "main", &p.url());
    pl.sync_ok().await;
    let config_before = std::fs::read(&pl.config).unwrap();
    let old_ca = std::fs::read(p.data.ca_cert_path()).unwrap();
    let old_cert = std::fs::read(p.data.server_cert_path()).unwrap();

    // Renewed from the same CA: the running serve takes it at the next handshake.
    let said = ok(on_data(&p, &["tls", "renew"], &[]));
    assert!(said.contains("valid until"), "{said}");
    assert_ne!(std::fs::read(p.data.server_cert_path()).unwrap(), old_cert);
    let v2 = publish_next(&p, "v2", 1);
    pl.sync_ok().await;
    assert_eq!(pl.current_version(), Some(v2));

    // A new CA, listed by root 2 beside the old one; the certificate is still the old CA's.
    let said = ok(on_data(
        &p,
        &["tls", "rotate-ca"],
        &[("--root-key", &[init_root_key(&p)])],
    ));
    assert!(said.contains("root 2 written"), "{said}");
    let new_ca = std::fs::read(p.data.ca_cert_path()).unwrap();
    assert_ne!(new_ca, old_ca);
    pl.sync_ok().await;
    assert!(pl.data.join("roots/2.yaml").exists(), "the puller follows root 2");

    // Now the server's certificate comes from the new CA, which the old one
    // cross-certifies: a client trusting either CA alone gets through (a `run`
    // daemon that learned the new CA while running has not rebuilt its client).
    ok(on_data(&p, &["tls", "renew"], &[]));
    let served = std::fs::read_to_string(p.data.server_cert_path()).unwrap();
    assert_eq!(
        served.matches("BEGIN CERTIFICATE").count(),
        2,
        "leaf and cross-certificate"
    );
    assert!(
        served_by_ca(&p.url(), &new_ca).await,
        "the new certificate chains to the new CA"
    );
    assert!(
        served_by_ca(&p.url(), &old_ca).await,
        "and, cross-certified, to the old one"
    );
    let v4 = publish_next(&p, "v4", 2);
    pl.sync_ok().await;
    assert_eq!(pl.current_version(), Some(v4));
    assert_eq!(
        std::fs::read(&pl.config).unwrap(),
        config_before,
        "no config change on the box"
    );
    // Once the old CA is retired, the chain is the new CA's alone, and the box still syncs.
    std::fs::remove_file(p.data.previous_ca_key_path()).unwrap();
    ok(on_data(&p, &["tls", "renew"], &[]));
    assert!(served_by_ca(&p.url(), &new_ca).await);
    assert!(
        !served_by_ca(&p.url(), &old_ca).await,
        "without the cross-certificate the old CA alone no longer reaches it"
    );
    let v5 = publish_next(&p, "v5", 0);
    pl.sync_ok().await;
    assert_eq!(pl.current_version(), Some(v5));
    p.stop().await;
}
