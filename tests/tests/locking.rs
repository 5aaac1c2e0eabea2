//! Locking and concurrency in `serve`: people's pages and players' `head`
//! requests never queue behind a publish that waits for, or holds, `store.lock`.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use skycast_tests::web::{WebClient, TEST_PASSWORD};
use skycast_tests::{example, write_planning, PublisherFixture};

/// How long a page may take while a publish is stuck: far above a page's
/// usual few milliseconds, far below "queued until the publish ends".
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

async fn signed_in(fx: &PublisherFixture, user: &str, password: &str) -> WebClient {
    let mut web = fx.web_client();
    let page = web.login(user, password).await;
    assert_ne!(page.path, "/login", "login {user}: {}", page.status);
    web
}

/// True once some process waits in `flock` for the file with inode `ino`:
/// `/proc/locks` lists waiters with a `->` before their lock.
fn someone_waits_for(ino: u64) -> bool {
    let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    locks.lines().any(|line| {
        line.contains("->")
            && line
                .split_whitespace()
                .find(|f| f.matches(':').count() == 2)
                .and_then(|f| f.rsplit(':').next())
                .and_then(|i| i.parse::<u64>().ok())
                == Some(ino)
    })
}

#[tokio::test]
async fn pages_and_head_answer_while_a_publish_waits_for_the_store_lock() {
    let fx = PublisherFixture::start().await;
    fx.add_role_users();
    let planning = write_planning(&fx.dir.path().join("planning"), &["music/tone-a.mp3"]);
    assert_eq!(fx.publish(&planning).version, 1);
    let puller = fx.add_player("p1", "main", &fx.url());
    let config: toml::Table = toml::from_str(&std::fs::read_to_string(&puller.config).unwrap()).unwrap();
    let token = config["token"].as_str().unwrap().to_string();

    let mut admin = signed_in(&fx, "admin", "admin-password").await;
    let mut marketing = signed_in(&fx, "marketing", TEST_PASSWORD).await;
    let coffee = example("ads/coffee.mp3");
    admin.get("/admin/urgent").await;
    let page = admin
        .upload(
            "/admin/urgent/upload",
            "files",
            &[("coffee.mp3", std::fs::read(&coffee).unwrap())],
            &[],
        )
        .await;
    assert_eq!(page.path, "/admin/urgent", "{:?}", page.flash());
    let media = skycast_tests::file_id(&coffee).0.to_string();

    // Another writer (a CLI publish, say) holds the store: the web publish below
    // must wait for it, as every publish does.
    let held = fx.data.lock_store().unwrap();
    let ino = std::fs::metadata(fx.data.store_lock_path()).unwrap().ino();
    let publish = tokio::spawn(async move {
        admin
            .post(
                "/admin/urgent",
                &[
                    ("media", &media),
                    ("shops", "all"),
                    ("confirm", "yes"),
                    ("message", "drill"),
                ],
            )
            .await
    });
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for _ in 0..1000 {
        if someone_waits_for(ino) {
            break;
        }
        assert!(
            !publish.is_finished(),
            "the publish ended without waiting for the store lock"
        );
        tick.tick().await;
    }
    assert!(
        someone_waits_for(ino),
        "the web publish never waited for store.lock"
    );

    for path in ["/marketing", "/marketing/media", "/marketing/planning"] {
        let page = tokio::time::timeout(ANSWER_WITHIN, marketing.get(path))
            .await
            .unwrap_or_else(|_| panic!("{path} did not answer while a publish waited for the store"));
        assert_eq!(page.status, 200, "{path}");
    }
    let head = tokio::time::timeout(
        ANSWER_WITHIN,
        marketing
            .client()
            .get(format!("{}/v1/head", fx.url()))
            .bearer_auth(&token)
            .send(),
    )
    .await
    .expect("head did not answer while a publish waited for the store")
    .unwrap();
    assert_eq!(head.status(), 200);
    let head: serde_json::Value = head.json().await.unwrap();
    assert_eq!(head["version"], 1, "the waiting publish has not landed");
    assert!(
        !publish.is_finished(),
        "the publish cannot finish while the store is held"
    );

    drop(held);
    let page = tokio::time::timeout(Duration::from_secs(30), publish)
        .await
        .expect("the publish finishes once the store is free")
        .unwrap();
    let flash = page.flash().unwrap_or_default();
    assert!(flash.contains("Version 2 published"), "{flash}");
    assert_eq!(fx.data.store().unwrap().head_version().unwrap().unwrap().0, 2);
}
