//! A media server that trickles one byte per second never hangs a sync: the
//! puller's minimum-throughput rule aborts the download, keeps the partial file,
//! says why in `status`, and the next sync resumes with `Range` (issue 10,
//! done-when 6).

use std::time::{Duration, Instant};

use skycast_tests::proxy::{Fault, Proxy};
use skycast_tests::{edit_config, example, example_music, file_id, write_planning, PublisherFixture};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_server_sending_one_byte_per_second_aborts_the_sync_and_the_next_one_resumes() {
    let p = PublisherFixture::start().await;
    let proxy = Proxy::start(&p).await;
    let track = &example_music()[0];
    p.publish(&write_planning(&p.dir.path().join("v1"), &[track]));
    let (id, size) = file_id(&example(track));
    let pl = p.add_player("shop-1", "main", &proxy.url());
    // The default rule is 1 KiB/s over 30 s; a 2 s window keeps the test short.
    let window_secs = 2;
    edit_config(&pl, |t| {
        t.insert(
            "min_download_window_secs".into(),
            toml::Value::Integer(window_secs),
        );
    });
    let fast = (size / 2) as usize;
    proxy.set(Fault::TrickleMedia {
        fast,
        every: Duration::from_secs(1),
    });

    let started = Instant::now();
    let out = pl.sync().await;
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "sync must give up on a trickle");
    assert!(err.contains("too slow") && err.contains("resumes"), "{err}");
    // The burst leaves the window after 2 s, judged every 0.5 s; the rest is start-up.
    println!("trickled sync aborted after {took:?} (window {window_secs} s)");
    assert!(
        took < Duration::from_secs(window_secs as u64 + 4),
        "took {took:?}"
    );
    assert_eq!(pl.current_version(), None);
    let status = pl.status().await;
    let why = status["last_error"].as_str().unwrap_or_default().to_string();
    assert!(
        why.contains("too slow") && why.contains("1024 bytes/s"),
        "{status}"
    );
    let partial = pl.data.join("partial").join(format!("{id}.part"));
    let kept = std::fs::metadata(&partial).unwrap().len();
    assert!(kept >= fast as u64 && kept < size, "kept {kept} of {size}");

    // The server recovers: the next sync asks for the rest only.
    proxy.set(Fault::None);
    proxy.clear_log();
    pl.sync_ok().await;
    assert_eq!(pl.current_version(), Some(1));
    let media: Vec<_> = proxy
        .log()
        .into_iter()
        .filter(|l| l.path.starts_with("/v1/media/"))
        .collect();
    assert_eq!(media.len(), 1, "{media:?}");
    assert_eq!(media[0].range.as_deref(), Some(format!("bytes={kept}-").as_str()));
    assert_eq!(media[0].body_bytes as u64, size - kept);
    assert!(pl.status().await["last_error"].is_null());
    p.stop().await;
}
