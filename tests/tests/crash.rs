//! kill -9 at random moments: a puller in the middle of a sync, a publisher in the
//! middle of a publish. Each must leave a complete version (old or new), never a mix.

use std::time::{Duration, Instant};

use skycast_tests::{bin, example_music, write_planning, PublisherFixture};

/// xorshift64*: reproducible random delays; the seed is printed so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn from_env_or_clock() -> Rng {
        let seed = std::env::var("SKYCAST_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        println!("SKYCAST_TEST_SEED={seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// Where in an operation's run the next kill lands: uniformly over its length, which
/// starts from one measured run and then follows every run that ended on its own, so
/// a change of load on the machine cannot push every kill past the end.
struct KillWindow {
    ms: u64,
}

impl KillWindow {
    fn delay(&self, rng: &mut Rng) -> Duration {
        Duration::from_millis(rng.below(self.ms * 5 / 4))
    }

    fn finished_in(&mut self, took: Duration) {
        self.ms = (took.as_millis() as u64).max(5);
    }
}

/// SIGKILLs `child` after `delay` unless it ends first. `None` when it was killed,
/// its exit status when it finished on its own.
async fn kill_after(child: &mut tokio::process::Child, delay: Duration) -> Option<std::process::ExitStatus> {
    tokio::select! {
        status = child.wait() => Some(status.unwrap()),
        _ = tokio::time::sleep(delay) => {
            child.start_kill().unwrap(); // SIGKILL on unix
            child.wait().await.unwrap();
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puller_killed_at_random_moments_always_leaves_a_complete_version() {
    let p = PublisherFixture::start().await;
    let music = example_music();
    let work = p.dir.path().join("plannings");
    // Versions alternate between different track sets, so every sync downloads and prunes.
    let sets: Vec<Vec<&str>> = vec![
        music.iter().take(3).map(String::as_str).collect(),
        music.iter().skip(3).map(String::as_str).collect(),
        music.iter().step_by(2).map(String::as_str).collect(),
    ];
    let plannings: Vec<_> = sets
        .iter()
        .enumerate()
        .map(|(i, s)| write_planning(&work.join(i.to_string()), s))
        .collect();
    let pl = p.add_player("main-1", "main", &p.url());

    // Measure one full sync to spread the kills over its whole length.
    p.publish(&plannings[0]);
    let t = Instant::now();
    pl.sync_ok().await;
    let mut window = KillWindow { ms: 0 };
    window.finished_in(t.elapsed());
    println!("one full sync takes {} ms", window.ms);

    let mut rng = Rng::from_env_or_clock();
    let (mut killed, mut old_kept, mut new_reached) = (0, 0, 0);
    for round in 0..50 {
        let before = pl.current_version();
        let new = p.publish(&plannings[(round + 1) % plannings.len()]).version;
        let started = Instant::now();
        let mut child = pl.command("sync").spawn().unwrap();
        match kill_after(&mut child, window.delay(&mut rng)).await {
            None => killed += 1,
            Some(status) => {
                assert!(status.success(), "round {round}: an unkilled sync must succeed");
                window.finished_in(started.elapsed());
            }
        }
        let after = pl
            .check_consistent(&p.trusted())
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(
            after == before || after == Some(new),
            "round {round}: {after:?} is neither {before:?} nor {new}"
        );
        if after == before {
            old_kept += 1;
        } else {
            new_reached += 1;
        }
        pl.sync_ok().await;
        assert_eq!(
            pl.check_consistent(&p.trusted()),
            Ok(Some(new)),
            "round {round}: the next sync completes"
        );
    }
    println!(
        "50 rounds: {killed} killed mid-sync, {old_kept} kept the old version, {new_reached} had swapped"
    );
    assert!(
        killed >= 10,
        "too few kills landed inside a sync to prove anything: {killed}"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_killed_at_random_moments_leaves_a_signed_head_and_a_verifiable_store() {
    let p = PublisherFixture::start().await;
    let music: Vec<String> = example_music();
    let all: Vec<&str> = music.iter().map(String::as_str).collect();
    let planning = write_planning(&p.dir.path().join("plan"), &all);
    let publish = || {
        let mut c = tokio::process::Command::new(bin("skycast-publisher"));
        c.args(["publish", "--data"])
            .arg(p.data.root())
            .arg("--planning")
            .arg(&planning);
        c.args(["--author", "crash-test"]).kill_on_drop(true);
        c
    };
    let t = Instant::now();
    assert!(publish().status().await.unwrap().success());
    let mut window = KillWindow { ms: 0 };
    window.finished_in(t.elapsed());
    println!("one full publish takes {} ms", window.ms);

    let mut rng = Rng::from_env_or_clock();
    let mut killed = 0;
    for round in 0..20 {
        let before = p.data.store().unwrap().head_version().unwrap().unwrap().0;
        let started = Instant::now();
        let mut child = publish().spawn().unwrap();
        match kill_after(&mut child, window.delay(&mut rng)).await {
            None => killed += 1,
            Some(status) => {
                assert!(
                    status.success(),
                    "round {round}: an unkilled publish must succeed"
                );
                window.finished_in(started.elapsed());
            }
        }
        let head = p.data.store().unwrap().head_version().unwrap().unwrap().0;
        assert!(
            head == before || head == before + 1,
            "round {round}: head {head} after {before}"
        );
        let verify = std::process::Command::new(bin("skycast-publisher"))
            .args(["verify", "--data"])
            .arg(p.data.root())
            .output()
            .unwrap();
        assert!(
            verify.status.success(),
            "round {round}: verify failed:\n{}",
            String::from_utf8_lossy(&verify.stdout)
        );
    }
    println!("20 rounds: {killed} publishes killed mid-way");
    let before = p.data.store().unwrap().head_version().unwrap().unwrap().0;
    assert!(
        publish().status().await.unwrap().success(),
        "publishing still works"
    );
    assert_eq!(
        p.data.store().unwrap().head_version().unwrap().unwrap().0,
        before + 1
    );
    assert!(killed >= 5, "too few kills landed inside a publish: {killed}");
    p.stop().await;
}
