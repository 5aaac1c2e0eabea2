//! The auditor's `verify`: passes on an honest store (also a plain git clone) and
//! catches history rewritten to alter an old version's manifest or media.

use std::path::Path;
use std::process::Output;

use git2::{Oid, Repository, Signature};
use skycast_tests::{bin, example_music, write_planning, PublisherFixture};

fn verify_cli(args: &[&str], data: &Path) -> Output {
    std::process::Command::new(bin("skycast-publisher"))
        .arg("verify")
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .unwrap()
}

async fn store_with_three_versions() -> PublisherFixture {
    let p = PublisherFixture::start().await;
    let music = example_music();
    let work = p.dir.path().join("plannings");
    p.publish(&write_planning(&work.join("1"), &[&music[0]]));
    p.publish(&write_planning(&work.join("2"), &[&music[0], &music[1]]));
    p.publish(&write_planning(&work.join("3"), &[&music[1], &music[2]]));
    p
}

/// Rewrites history as an attacker with write access to the store would: version 1's
/// tree is altered by `tamper`, later commits are re-parented, `main` and the tags moved.
fn rewrite_first_version(store: &Path, tamper: impl FnOnce(&Repository, &git2::Tree) -> Oid) {
    let repo = Repository::open(store).unwrap();
    let mut walk = repo.revwalk().unwrap();
    walk.push_ref("refs/heads/main").unwrap();
    walk.set_sorting(git2::Sort::REVERSE | git2::Sort::TOPOLOGICAL)
        .unwrap();
    let commits: Vec<Oid> = walk.map(|o| o.unwrap()).collect();
    let who = Signature::now("mallory", "mallory@example.invalid").unwrap();
    let mut parent: Option<Oid> = None;
    let mut tamper = Some(tamper);
    for (i, oid) in commits.iter().enumerate() {
        let old = repo.find_commit(*oid).unwrap();
        let tree_id = match tamper.take() {
            Some(f) => f(&repo, &old.tree().unwrap()),
            None => old.tree_id(),
        };
        let tree = repo.find_tree(tree_id).unwrap();
        let parents: Vec<git2::Commit> = parent.map(|p| repo.find_commit(p).unwrap()).into_iter().collect();
        let parent_refs: Vec<&git2::Commit> = parents.iter().collect();
        let new = repo
            .commit(
                None,
                &old.author(),
                &old.committer(),
                old.message().unwrap(),
                &tree,
                &parent_refs,
            )
            .unwrap();
        let obj = repo.find_object(new, None).unwrap();
        repo.tag(&format!("v{}", i + 1), &obj, &who, "moved", true)
            .unwrap();
        parent = Some(new);
    }
    repo.reference("refs/heads/main", parent.unwrap(), true, "rewrite")
        .unwrap();
}

fn replace_in_tree(repo: &Repository, tree: &git2::Tree, path: &str, bytes: &[u8]) -> Oid {
    let blob = repo.blob(bytes).unwrap();
    match path.split_once('/') {
        None => {
            let mut b = repo.treebuilder(Some(tree)).unwrap();
            b.insert(path, blob, 0o100644).unwrap();
            b.write().unwrap()
        }
        Some((dir, name)) => {
            let sub = repo.find_tree(tree.get_name(dir).unwrap().id()).unwrap();
            let mut sb = repo.treebuilder(Some(&sub)).unwrap();
            sb.insert(name, blob, 0o100644).unwrap();
            let sub_id = sb.write().unwrap();
            let mut b = repo.treebuilder(Some(tree)).unwrap();
            b.insert(dir, sub_id, 0o040000).unwrap();
            b.write().unwrap()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_passes_on_an_honest_store_and_on_a_plain_git_clone() {
    let p = store_with_three_versions().await;
    let out = verify_cli(&[], p.data.root());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("verified 3 versions"));

    let clone = p.dir.path().join("auditor-clone");
    let git = std::process::Command::new("git")
        .arg("clone")
        .arg("-q")
        .arg(p.data.store_path())
        .arg(&clone)
        .status()
        .unwrap();
    assert!(git.success());
    let without_key = verify_cli(&[], &clone);
    assert!(!without_key.status.success());
    assert!(String::from_utf8_lossy(&without_key.stderr).contains("--key"));
    let key = p.public_key().to_string();
    let out = verify_cli(&["--key", &key], &clone);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let other = skycast_schema::SecretKey::from_seed([3; 32]).public().to_string();
    assert!(
        !verify_cli(&["--key", &other], &clone).status.success(),
        "a different key must fail every version"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_detects_a_rewritten_old_manifest() {
    let p = store_with_three_versions().await;
    rewrite_first_version(&p.data.store_path(), |repo, tree| {
        let entry = tree.get_name("manifest.yaml").unwrap();
        let text = String::from_utf8(repo.find_blob(entry.id()).unwrap().content().to_vec()).unwrap();
        replace_in_tree(
            repo,
            tree,
            "manifest.yaml",
            text.replace("published_by: tester", "published_by: someone")
                .as_bytes(),
        )
    });
    let out = verify_cli(&[], p.data.root());
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{report}");
    assert!(
        report.contains("FAIL v1") && report.contains("signature does not match"),
        "{report}"
    );
    assert!(
        report.contains("ok   v2") && report.contains("ok   v3"),
        "{report}"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_detects_rewritten_old_media() {
    let p = store_with_three_versions().await;
    let (id, _) = skycast_tests::file_id(&skycast_tests::example(&example_music()[0]));
    rewrite_first_version(&p.data.store_path(), |repo, tree| {
        replace_in_tree(
            repo,
            tree,
            &format!("media/{}", id.file_name()),
            b"not the published audio",
        )
    });
    let out = verify_cli(&[], p.data.root());
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{report}");
    assert!(
        report.contains("FAIL v1") && report.contains(&id.to_string()) && report.contains("altered"),
        "{report}"
    );
    p.stop().await;
}
