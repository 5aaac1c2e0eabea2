//! The workspace's tests, over a real data directory: uploads, library, draft,
//! publish, review, interrupts and rollback.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use skycast_schema::verify;
use skycast_schema::{Interrupt, Limits, Manifest, MediaId, MediaKind, Program, TrustedKeys};

use super::*;
use crate::data_dir::InitOptions;
use crate::store::{Store, MANIFEST_FILE, SIGNATURE_FILE};

struct Fixture {
    _dir: tempfile::TempDir,
    data: DataDir,
    db: Db,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path().join("publisher"));
        data.init(
            InitOptions {
                root: Default::default(),
                public_url: "https://127.0.0.1:1".into(),
                admin_user: "admin".into(),
                admin_password: Some("admin-password".into()),
                tls_cert_and_key: None,
                extra_names: Vec::new(),
            },
            [7; 32],
        )
        .unwrap();
        let db = data.db().unwrap();
        Fixture { _dir: dir, data, db }
    }

    fn ws(&self) -> Workspace<'_> {
        Workspace::new(&self.data, &self.db)
    }

    fn store(&self) -> Store {
        self.data.store().unwrap()
    }

    /// Writes `bytes` as an upload and ingests it.
    fn ingest_bytes(&self, bytes: &[u8], name: &str, kind: MediaKind) -> (PathBuf, Result<LibraryMedia>) {
        let ws = self.ws();
        let (path, _) = ws.new_upload_file().unwrap();
        fs::write(&path, bytes).unwrap();
        let result = ws.ingest(&path, name, kind, "alice", at("2026-12-01T09:00:00Z"));
        (path, result)
    }

    fn upload(&self, example_path: &str, kind: MediaKind) -> LibraryMedia {
        let name = example_path.rsplit('/').next().unwrap();
        self.ingest_bytes(&example(example_path), name, kind).1.unwrap()
    }

    fn library_rows(&self) -> u64 {
        self.db.library_len().unwrap()
    }

    /// Verifies version `n` against the publisher's key.
    fn verified(&self, n: u64) -> Manifest {
        let store = self.store();
        let trusted = TrustedKeys::new([self.data.public_key().unwrap()]);
        let v = verify(
            &store.version_file(n, MANIFEST_FILE).unwrap(),
            &store.version_file(n, SIGNATURE_FILE).unwrap(),
            &trusted,
            &Limits::default(),
        )
        .unwrap();
        (*v).clone()
    }
}

fn example(rel: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../content-example")
        .join(rel);
    fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

fn program(yaml: &str) -> Program<MediaId> {
    serde_norway::from_str(yaml).unwrap()
}

/// One shop, one playlist of `tracks` played all day.
fn day_program(tracks: &[&LibraryMedia]) -> Program<MediaId> {
    let items: Vec<String> = tracks.iter().map(|m| m.id.to_string()).collect();
    program(&format!(
        "playlists:\n  day: {{order: sequential, items: [{}]}}\n\
         shops:\n  main: {{tags: [pilot], hours: {{mon: \"09:00-20:00\", sun: closed}}}}\n\
         schedule:\n  - {{playlist: day, shops: [all], days: [mon-sat], time: \"09:00-20:00\"}}\n",
        items.join(", ")
    ))
}

fn interrupt(id: &str, media: &LibraryMedia, shops: &[&str], not_after: Option<&str>) -> Interrupt<MediaId> {
    Interrupt {
        id: id.into(),
        media: media.id,
        level: skycast_schema::InterruptLevel::Urgent,
        shops: shops.iter().map(|s| s.parse().unwrap()).collect(),
        not_before: None,
        not_after: not_after.map(|t| at(t).into()),
        start: None,
        after: None,
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A short but well-formed PCM WAV file.
fn wav_bytes() -> Vec<u8> {
    let samples = 44_100u32;
    let data_len = samples * 2;
    let mut w = Vec::new();
    w.extend(b"RIFF");
    w.extend((36 + data_len).to_le_bytes());
    w.extend(b"WAVEfmt ");
    w.extend(16u32.to_le_bytes());
    w.extend(1u16.to_le_bytes()); // PCM
    w.extend(1u16.to_le_bytes()); // mono
    w.extend(44_100u32.to_le_bytes());
    w.extend((44_100u32 * 2).to_le_bytes());
    w.extend(2u16.to_le_bytes());
    w.extend(16u16.to_le_bytes());
    w.extend(b"data");
    w.extend(data_len.to_le_bytes());
    for i in 0..samples {
        w.extend((((i % 100) as i16 - 50) * 300).to_le_bytes());
    }
    w
}

#[test]
fn broken_uploads_are_refused_with_a_reason_and_leave_nothing_behind() {
    let fx = Fixture::new();
    let good = example("ads/coffee.mp3");
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (wav_bytes(), "jingle.mp3", "WAV"),
        (good[..good.len() / 2].to_vec(), "coffee-cut.mp3", "truncated"),
        (Vec::new(), "empty.mp3", "empty"),
    ];
    for (bytes, name, words) in cases {
        let (temp, result) = fx.ingest_bytes(&bytes, name, MediaKind::Ad);
        let err = result.expect_err(name);
        assert!(matches!(err, PublisherError::NotMp3 { .. }), "{name}: {err:?}");
        let text = err.to_string();
        assert!(text.contains(words) && text.contains(name), "{name}: {text}");
        assert!(!temp.exists(), "{name}: the temporary file stays");
        let ws = fx.ws();
        assert_eq!(files_in(&ws.uploads_dir()), ["tmp"], "{name}");
        assert!(files_in(&ws.uploads_tmp_dir()).is_empty(), "{name}");
        assert_eq!(fx.library_rows(), 0, "{name}");
    }
}

#[test]
fn an_upload_outside_the_uploads_folder_is_neither_read_nor_removed() {
    let fx = Fixture::new();
    let outside = fx.data.root().join("elsewhere.mp3");
    fs::write(&outside, example("ads/coffee.mp3")).unwrap();
    let err = fx
        .ws()
        .ingest(
            &outside,
            "x.mp3",
            MediaKind::Ad,
            "alice",
            at("2026-12-01T09:00:00Z"),
        )
        .unwrap_err();
    assert!(err.to_string().contains("not in"), "{err}");
    assert!(outside.exists());
    assert_eq!(fx.library_rows(), 0);
}

#[test]
fn an_accepted_upload_is_stored_by_content_id_and_labelled_from_its_name() {
    let fx = Fixture::new();
    let bytes = example("music/tone-a.mp3");
    let (temp, result) = fx.ingest_bytes(&bytes, "C:\\music\\..\\x/../My \u{7}Song.mp3", MediaKind::Music);
    let media = result.unwrap();
    assert!(!temp.exists());
    assert_eq!(media.id, MediaId::of(&bytes));
    assert_eq!(media.file_name, "My Song.mp3");
    assert_eq!(media.title, "My Song");
    assert_eq!(media.added_by, "alice");
    assert_eq!(media.added_at, "2026-12-01T09:00:00Z");
    assert_eq!(media.size, bytes.len() as u64);
    assert!(
        media.duration_ms > 1000 && media.loudness_lufs.is_some(),
        "{media:?}"
    );
    let ws = fx.ws();
    assert_eq!(
        fs::read(ws.uploads_dir().join(media.id.file_name())).unwrap(),
        bytes
    );
    assert_eq!(ws.media(&media.id).unwrap(), media);
    assert_eq!(ws.media_bytes(&media.id).unwrap(), bytes);
    let json = serde_json::to_value(&media).unwrap();
    assert_eq!(json["id"], media.id.to_string());
    assert_eq!(json["kind"], "music");
}

#[test]
fn an_id3_title_and_artist_label_the_upload() {
    fn frame(id: &[u8; 4], text: &str) -> Vec<u8> {
        let mut f = id.to_vec();
        f.extend(((text.len() + 1) as u32).to_be_bytes());
        f.extend([0, 0, 0]); // flags, then ISO-8859-1 text
        f.extend(text.as_bytes());
        f
    }
    let mut frames = frame(b"TIT2", "Tagged Title");
    frames.extend(frame(b"TPE1", "Tagged Artist"));
    let size = frames.len() as u32;
    let syncsafe = [
        (size >> 21) & 0x7f,
        (size >> 14) & 0x7f,
        (size >> 7) & 0x7f,
        size & 0x7f,
    ];
    let mut bytes = b"ID3\x03\x00\x00".to_vec();
    bytes.extend(syncsafe.map(|b| b as u8));
    bytes.extend(frames);
    bytes.extend(example("music/chords-b.mp3"));
    let fx = Fixture::new();
    let media = fx.ingest_bytes(&bytes, "chords.mp3", MediaKind::Music).1.unwrap();
    assert_eq!(media.title, "Tagged Title");
    assert_eq!(media.artist.as_deref(), Some("Tagged Artist"));
}

#[test]
fn uploading_the_same_content_again_returns_the_existing_entry() {
    let fx = Fixture::new();
    let first = fx.upload("music/tone-a.mp3", MediaKind::Music);
    let (temp, again) = fx.ingest_bytes(&example("music/tone-a.mp3"), "copy.mp3", MediaKind::Ad);
    assert_eq!(again.unwrap(), first);
    assert!(!temp.exists());
    assert_eq!(fx.library_rows(), 1);
    let ws = fx.ws();
    assert_eq!(files_in(&ws.uploads_dir()), [first.id.file_name(), "tmp".into()]);
}

#[test]
fn labels_are_checked_when_media_are_renamed() {
    let fx = Fixture::new();
    let ws = fx.ws();
    let m = fx.upload("music/tone-a.mp3", MediaKind::Music);
    ws.update_media(
        &m.id,
        "  Morning Tone ",
        Some(" Studio "),
        MediaKind::Announcement,
    )
    .unwrap();
    let after = ws.media(&m.id).unwrap();
    assert_eq!(
        (after.title.as_str(), after.artist.as_deref(), after.kind),
        ("Morning Tone", Some("Studio"), MediaKind::Announcement)
    );
    ws.update_media(&m.id, "Morning Tone", Some(" "), MediaKind::Music)
        .unwrap();
    assert_eq!(ws.media(&m.id).unwrap().artist, None);
    for (title, artist) in [
        (" ", None),
        ("a\u{0}b", None),
        (&*"x".repeat(201), None),
        ("ok", Some("\n")),
    ] {
        let err = ws
            .update_media(&m.id, title, artist, MediaKind::Music)
            .unwrap_err();
        assert!(matches!(err, PublisherError::BadRequest(_)), "{title:?}: {err}");
    }
    let unknown = MediaId::of(b"nothing");
    assert!(matches!(
        ws.update_media(&unknown, "t", None, MediaKind::Music),
        Err(PublisherError::NotFound(_))
    ));
    assert!(matches!(ws.media(&unknown), Err(PublisherError::NotFound(_))));
}

#[test]
fn search_takes_like_wildcards_and_sql_as_plain_text() {
    let fx = Fixture::new();
    let ws = fx.ws();
    let a = fx.upload("music/tone-a.mp3", MediaKind::Music);
    let b = fx.upload("music/chords-b.mp3", MediaKind::Music);
    let c = fx.upload("ads/coffee.mp3", MediaKind::Ad);
    ws.update_media(&a.id, "100% Pure", Some("Studio"), MediaKind::Music)
        .unwrap();
    ws.update_media(&b.id, "Snake_case", None, MediaKind::Music)
        .unwrap();
    ws.update_media(&c.id, "1000 Pure Beans", None, MediaKind::Ad)
        .unwrap();
    let titles = |search: Option<&str>| -> Vec<String> {
        ws.library(search).unwrap().into_iter().map(|m| m.title).collect()
    };
    assert_eq!(titles(None), ["100% Pure", "1000 Pure Beans", "Snake_case"]);
    assert_eq!(titles(Some("%")), ["100% Pure"]);
    assert_eq!(titles(Some("0%")), ["100% Pure"]);
    assert_eq!(titles(Some("_")), ["Snake_case"]);
    assert_eq!(titles(Some("e_c")), ["Snake_case"]);
    assert_eq!(titles(Some("\\")), Vec::<String>::new());
    assert_eq!(titles(Some("PURE")), ["100% Pure", "1000 Pure Beans"]);
    assert_eq!(titles(Some("studio")), ["100% Pure"]);
    assert_eq!(titles(Some("coffee.mp3")), ["1000 Pure Beans"]);
    assert_eq!(titles(Some("'; DROP TABLE library; --")), Vec::<String>::new());
    assert_eq!(titles(Some("  ")).len(), 3);
    assert_eq!(fx.library_rows(), 3);
}

#[test]
fn a_published_draft_is_signed_authored_by_the_user_and_labelled_from_the_library() {
    let fx = Fixture::new();
    let ws = fx.ws();
    let tone = fx.upload("music/tone-a.mp3", MediaKind::Music);
    let chords = fx.upload("music/chords-b.mp3", MediaKind::Music);
    let unused = fx.upload("ads/bread.mp3", MediaKind::Ad);
    ws.update_media(&tone.id, "Morning Tone", Some("Skycast Studio"), MediaKind::Music)
        .unwrap();
    let now = at("2026-12-05T10:00:00.750Z");
    let saved = ws
        .edit_draft("alice", now, |d| {
            d.program = day_program(&[&tone, &chords]);
            Ok(())
        })
        .unwrap();
    assert_eq!(
        ws.draft().unwrap(),
        saved,
        "the draft survives a round trip through the database"
    );
    assert!(ws.draft_differs_from_head().unwrap());
    let preview = ws.draft_manifest(&saved, "alice", now).unwrap();
    assert_eq!(preview.version(), 1);

    let published = ws.publish(&saved, "alice", "Winter music", now).unwrap();
    assert_eq!(
        (published.version, published.media_count, published.new_media),
        (1, 2, 2)
    );
    let m = fx.verified(1);
    assert_eq!(m.published_by, "alice");
    assert_eq!(m.published_at.to_string(), "2026-12-05T10:00:00Z");
    assert_eq!(m.expires_at.0 - m.published_at.0, Duration::days(7));
    assert_eq!(m.program, saved.program);
    let labels: Vec<(String, Option<String>)> = m
        .media
        .iter()
        .map(|e| (e.title.clone(), e.artist.clone()))
        .collect();
    assert_eq!(
        labels,
        [
            ("Morning Tone".to_string(), Some("Skycast Studio".to_string())),
            ("chords-b".to_string(), None)
        ]
    );
    assert!(m.media_entry(&unused.id).is_none(), "unreferenced media stay out");
    assert_eq!(preview.media, m.media);
    let history = fx.store().history().unwrap();
    assert_eq!(
        (history[0].author.as_str(), history[0].message.as_str()),
        ("alice", "Winter music")
    );
    let ids: BTreeSet<MediaId> = fx
        .store()
        .media_ids_in(fx.store().head().unwrap().unwrap())
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, BTreeSet::from([tone.id, chords.id]));

    assert_eq!(ws.draft().unwrap().base_version, Some(1));
    assert!(!ws.draft_differs_from_head().unwrap());
    assert_eq!(ws.head_manifest().unwrap().unwrap(), m);
}

#[test]
fn publish_needs_a_message_and_a_usable_author() {
    let fx = Fixture::new();
    let ws = fx.ws();
    let draft = ws.draft().unwrap();
    let now = at("2026-12-05T10:00:00Z");
    for (author, message) in [
        ("alice", "  "),
        ("alice", &*"m".repeat(501)),
        ("<x>", "ok"),
        ("", "ok"),
    ] {
        let err = ws.publish(&draft, author, message, now).unwrap_err();
        assert!(matches!(err, PublisherError::BadRequest(_)), "{err}");
    }
    assert_eq!(ws.head_version().unwrap(), None);
}

#[test]
fn saving_a_draft_names_what_is_wrong() {
    let fx = Fixture::new();
    let ws = fx.ws();
    let tone = fx.upload("music/tone-a.mp3", MediaKind::Music);
    let now = at("2026-12-05T10:00:00Z");
    let mut draft = ws.draft().unwrap();
    assert_eq!(draft, Draft::empty());
    draft.program = day_program(&[&tone]);
    draft.program.schedule[0].playlist = "night".into();
    let err = ws.save_draft(&draft, "alice", now).unwrap_err().to_string();
    assert!(
        err.contains("schedule[0].playlist") && err.contains("night"),
        "{err}"
    );

    let mut draft = ws.draft().unwrap();
    let stranger = MediaId::of(b"not uploaded");
    draft.program = day_program(&[&tone]);
    draft
        .program
        .playlists
        .get_mut("day")
        .unwrap()
        .items
        .push(stranger);
    let err = ws.save_draft(&draft, "alice", now).unwrap_err().to_string();
    assert!(
        err.contains("playlists.day.items[1]") && err.contains(&stranger.to_string()),
        "{err}"
    );

    draft.program = day_program(&[&tone]);
    draft.timezone = "Mars/Olympus".into();
    let err = ws.save_draft(&draft, "alice", now).unwrap_err().to_string();
    assert!(err.contains("Mars/Olympus"), "{err}");
    draft.timezone = DEFAULT_TIMEZONE.into();
    draft.valid_days = 0;
    assert!(ws
        .save_draft(&draft, "alice", now)
        .unwrap_err()
        .to_string()
        .contains("valid_days"));

    let err = ws
        .edit_draft("alice", now, |d| {
            d.program = day_program(&[&tone]);
            Err(PublisherError::BadRequest("changed my mind".into()))
        })
        .unwrap_err();
    assert!(err.to_string().contains("changed my mind"));
    assert_eq!(ws.draft().unwrap(), Draft::empty(), "a failed edit saves nothing");
    assert!(!ws.draft_differs_from_head().unwrap());
}

#[test]
fn an_approved_request_is_published_with_the_requester_as_author() {
    let fx = Fixture::new();
    let ws = fx.ws();
    assert!(!ws.review_required().unwrap());
    ws.set_review_required(true).unwrap();
    assert!(ws.review_required().unwrap());
    let tone = fx.upload("music/tone-a.mp3", MediaKind::Music);
    let now = at("2026-12-05T10:00:00Z");
    let draft = ws
        .edit_draft("bob", now, |d| {
            d.program = day_program(&[&tone]);
            Ok(())
        })
        .unwrap();
    let id = ws.request_publish(&draft, "bob", "New playlist", now).unwrap();
    assert_eq!(ws.head_version().unwrap(), None, "a request publishes nothing");
    let pending = ws.requests().unwrap();
    assert_eq!((pending[0].id, pending[0].status.as_str()), (id, "pending"));
    assert_eq!(ws.request_draft(id).unwrap(), draft);

    let later = at("2026-12-05T11:00:00Z");
    let published = ws.approve(id, "admin", later).unwrap();
    assert_eq!(published.version, 1);
    assert_eq!(fx.verified(1).published_by, "bob");
    let history = fx.store().history().unwrap();
    assert_eq!(history[0].author, "bob");
    assert_eq!(history[0].message, "New playlist (approved by admin)");
    let decided = &ws.requests().unwrap()[0];
    assert_eq!(decided.status, "approved");
    assert_eq!(decided.decided_by.as_deref(), Some("admin"));
    assert_eq!(decided.decided_at.as_deref(), Some("2026-12-05T11:00:00Z"));
    assert_eq!(decided.version, Some(1));
    assert!(matches!(
        ws.approve(id, "admin", later),
        Err(PublisherError::Conflict(_))
    ));
    assert!(matches!(
        ws.reject(id, "admin", later),
        Err(PublisherError::Conflict(_))
    ));
    assert!(matches!(
        ws.approve(99, "admin", later),
        Err(PublisherError::NotFound(_))
    ));
    assert_eq!(ws.head_version().unwrap(), Some(1));
}

#[test]
fn a_rejected_request_leaves_head_unchanged() {
    let fx = Fixture::new();
    let ws = fx.ws();
    let tone = fx.upload("music/tone-a.mp3", MediaKind::Music);
    let chords = fx.upload("music/chords-b.mp3", MediaKind::Music);
    let now = at("2026-12-05T10:00:00Z");
    let v1 = ws
        .edit_draft("admin", now, |d| {
            d.program = day_program(&[&tone]);
            Ok(())
        })
        .unwrap();
    ws.publish(&v1, "admin", "First", now).unwrap();
    let edited = ws
        .edit_draft("bob", now, |d| {
            d.program = day_program(&[&tone, &chords]);
            Ok(())
        })
        .unwrap();
    let id = ws.request_publish(&edited, "bob", "Add chords", now).unwrap();
    ws.reject(id, "admin", now).unwrap();
    assert_eq!(ws.head_version().unwrap(), Some(1));
    assert_eq!(fx.verified(1).program, v1.program);
    let request = ws.request(id).unwrap();
    assert_eq!((request.status.as_str(), request.version), ("rejected", None));
    let err = ws.approve(id, "admin", now).unwrap_err().to_string();
    assert!(err.contains("already rejected by admin"), "{err}");
    assert_eq!(fx.store().history().unwrap().len(), 1);
}

#[test]
fn an_interrupt_publishes_head_plus_it_and_not_the_unpublished_draft() {
    let fx = Fixture::new();
    let ws = fx.ws();
    let tone = fx.upload("music/tone-a.mp3", MediaKind::Music);
    let chords = fx.upload("music/chords-b.mp3", MediaKind::Music);
    let alarm = fx.upload("urgent/evacuation.mp3", MediaKind::Urgent);
    let now = at("2026-12-05T10:00:00Z");
    let v1 = ws
        .edit_draft("admin", now, |d| {
            d.program = day_program(&[&tone]);
            Ok(())
        })
        .unwrap();
    ws.publish(&v1, "admin", "First", now).unwrap();
    // An unpublished change: a second playlist.
    ws.edit_draft("bob", now, |d| {
        d.program.playlists.insert(
            "evening".into(),
            skycast_schema::Playlist {
                order: Default::default(),
                items: vec![chords.id],
            },
        );
        Ok(())
    })
    .unwrap();

    let refused = [
        (interrupt("x", &alarm, &["paris"], None), "paris"),
        (interrupt("x", &alarm, &["tag:nowhere"], None), "tag:nowhere"),
        (interrupt("x", &alarm, &[], None), "no shop"),
        (interrupt("Fire!", &alarm, &["all"], None), "cannot be added"),
        (
            interrupt("x", &alarm, &["all"], Some("2026-12-05T09:00:00Z")),
            "past",
        ),
        (
            Interrupt {
                media: MediaId::of(b"unknown"),
                ..interrupt("x", &alarm, &["all"], None)
            },
            "not in the library",
        ),
    ];
    for (int, words) in refused {
        let err = ws
            .publish_interrupt(int, "carol", "Alarm", now)
            .unwrap_err()
            .to_string();
        assert!(err.contains(words), "expected `{words}` in {err}");
    }
    assert_eq!(ws.head_version().unwrap(), Some(1));

    let fire = interrupt("fire", &alarm, &["tag:pilot"], Some("2026-12-05T12:00:00Z"));
    let published = ws
        .publish_interrupt(fire.clone(), "carol", "Evacuate", now)
        .unwrap();
    assert_eq!(published.version, 2);
    let m = fx.verified(2);
    let mut expected = v1.program.clone();
    expected.interrupts.push(fire.clone());
    assert_eq!(
        m.program, expected,
        "head's content plus the interrupt, no draft edits"
    );
    assert_eq!(m.published_by, "carol");
    assert!(m.media_entry(&chords.id).is_none());
    assert_eq!(m.media_entry(&alarm.id).unwrap().kind, MediaKind::Urgent);

    let draft = ws.draft().unwrap();
    assert_eq!(draft.base_version, Some(2));
    assert!(draft.program.playlists.contains_key("evening"));
    assert_eq!(draft.program.interrupts, std::slice::from_ref(&fire));
    let err = ws
        .publish_interrupt(fire.clone(), "carol", "Again", now)
        .unwrap_err();
    assert!(err.to_string().contains("already published"), "{err}");

    ws.publish(&draft, "bob", "Evening music", now).unwrap();
    let m = fx.verified(3);
    assert!(m.program.playlists.contains_key("evening"));
    assert_eq!(
        m.program.interrupts,
        [fire],
        "the draft publish keeps the interrupt"
    );
}

#[test]
fn an_interrupt_needs_a_published_version() {
    let fx = Fixture::new();
    let alarm = fx.upload("urgent/evacuation.mp3", MediaKind::Urgent);
    let err = fx
        .ws()
        .publish_interrupt(
            interrupt("fire", &alarm, &["all"], None),
            "carol",
            "Evacuate",
            at("2026-12-05T10:00:00Z"),
        )
        .unwrap_err();
    assert!(matches!(err, PublisherError::NothingPublished), "{err}");
}

#[test]
fn rollback_replaces_the_draft_with_the_new_head() {
    let fx = Fixture::new();
    let ws = fx.ws();
    let tone = fx.upload("music/tone-a.mp3", MediaKind::Music);
    let chords = fx.upload("music/chords-b.mp3", MediaKind::Music);
    let now = at("2026-12-05T10:00:00Z");
    for tracks in [vec![&tone], vec![&tone, &chords]] {
        let d = ws
            .edit_draft("admin", now, |d| {
                d.program = day_program(&tracks);
                Ok(())
            })
            .unwrap();
        ws.publish(&d, "admin", "Next", now).unwrap();
    }
    ws.edit_draft("bob", now, |d| {
        d.valid_days = 14;
        Ok(())
    })
    .unwrap();
    assert!(ws.draft_differs_from_head().unwrap());

    let published = ws.rollback(1, "admin", now).unwrap();
    assert_eq!(published.version, 3);
    assert_eq!(fx.verified(3).program, fx.verified(1).program);
    let draft = ws.draft().unwrap();
    assert_eq!(draft.base_version, Some(3));
    assert_eq!(draft.valid_days, 7);
    assert_eq!(draft.program, fx.verified(1).program);
    assert!(!ws.draft_differs_from_head().unwrap());
}

#[test]
fn ended_interrupts_are_dropped_when_publishing() {
    let fx = Fixture::new();
    let ws = fx.ws();
    let tone = fx.upload("music/tone-a.mp3", MediaKind::Music);
    let alarm = fx.upload("urgent/evacuation.mp3", MediaKind::Urgent);
    let coffee = fx.upload("ads/coffee.mp3", MediaKind::Ad);
    let created = at("2026-12-05T08:00:00Z");
    let draft = ws
        .edit_draft("admin", created, |d| {
            d.program = day_program(&[&tone]);
            d.program.interrupts = vec![
                interrupt("old", &coffee, &["all"], Some("2026-12-05T09:00:00Z")),
                interrupt("live", &alarm, &["main"], Some("2026-12-05T12:00:00Z")),
            ];
            Ok(())
        })
        .unwrap();
    let now = at("2026-12-05T10:00:00Z");
    assert_eq!(
        ws.draft_manifest(&draft, "admin", now)
            .unwrap()
            .program
            .interrupts
            .len(),
        1
    );
    ws.publish(&draft, "admin", "Later", now).unwrap();
    let m = fx.verified(1);
    let ids: Vec<&str> = m.program.interrupts.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["live"]);
    assert!(
        m.media_entry(&coffee.id).is_none(),
        "only the ended interrupt used it"
    );
    let saved: Vec<String> = ws
        .draft()
        .unwrap()
        .program
        .interrupts
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(saved, ["live"]);
    assert!(!ws.draft_differs_from_head().unwrap());
}

#[test]
fn an_upload_changed_on_disk_fails_publish_and_commits_nothing() {
    let fx = Fixture::new();
    let ws = fx.ws();
    let tone = fx.upload("music/tone-a.mp3", MediaKind::Music);
    let now = at("2026-12-05T10:00:00Z");
    let draft = ws
        .edit_draft("alice", now, |d| {
            d.program = day_program(&[&tone]);
            Ok(())
        })
        .unwrap();
    let path = ws.uploads_dir().join(tone.id.file_name());
    let mut bytes = fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    fs::write(&path, &bytes).unwrap();
    let err = ws.publish(&draft, "alice", "Tampered", now).unwrap_err();
    assert!(matches!(err, PublisherError::Conflict(_)), "{err:?}");
    assert!(err.to_string().contains("changed on disk"), "{err}");
    assert_eq!(fx.store().head().unwrap(), None);
    assert!(fx.store().history().unwrap().is_empty());

    fs::remove_file(&path).unwrap();
    let err = ws
        .publish(&draft, "alice", "Missing", now)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("neither in the store nor in the uploads folder"),
        "{err}"
    );
}

#[test]
fn a_draft_or_request_older_than_the_head_cannot_undo_it() {
    let fx = Fixture::new();
    let ws = fx.ws();
    let tone = fx.upload("music/tone-a.mp3", MediaKind::Music);
    let alarm = fx.upload("urgent/evacuation.mp3", MediaKind::Urgent);
    let now = at("2026-12-05T10:00:00Z");
    let v1 = ws
        .edit_draft("admin", now, |d| {
            d.program = day_program(&[&tone]);
            Ok(())
        })
        .unwrap();
    ws.publish(&v1, "admin", "First", now).unwrap();
    let snapshot = ws.draft().unwrap();
    let id = ws.request_publish(&snapshot, "bob", "Same again", now).unwrap();
    ws.publish_interrupt(
        interrupt("fire", &alarm, &["all"], None),
        "carol",
        "Evacuate",
        now,
    )
    .unwrap();

    let err = ws.approve(id, "admin", now).unwrap_err();
    assert!(
        matches!(&err, PublisherError::Conflict(m) if m.contains("version 1") && m.contains("version 2")),
        "{err}"
    );
    assert_eq!(ws.request(id).unwrap().status, "pending");
    let err = ws.request_publish(&snapshot, "bob", "Stale", now).unwrap_err();
    assert!(matches!(err, PublisherError::Conflict(_)), "{err}");
    let err = ws.publish(&snapshot, "bob", "Stale", now).unwrap_err();
    assert!(matches!(err, PublisherError::Conflict(_)), "{err}");
    assert_eq!(ws.head_version().unwrap(), Some(2));
    assert_eq!(fx.verified(2).program.interrupts.len(), 1);
}

#[test]
fn media_published_by_the_cli_join_the_library() {
    let fx = Fixture::new();
    let planning = Path::new(env!("CARGO_MANIFEST_DIR")).join("../content-example/planning.yaml");
    let now = at("2026-12-05T10:00:00Z");
    crate::publish::publish_planning(&fx.data, &planning, "dave", Some("Pilot"), now).unwrap();
    let ws = fx.ws();
    let library = ws.library(None).unwrap();
    let head = ws.head_manifest().unwrap().unwrap();
    assert_eq!(library.len(), head.media.len());
    let coffee = library.iter().find(|m| m.title == "Coffee 2-for-1").unwrap();
    assert_eq!((coffee.kind, coffee.added_by.as_str()), (MediaKind::Ad, "dave"));
    assert_eq!(coffee.added_at, "2026-12-05T10:00:00Z");
    assert_eq!(coffee.file_name, coffee.id.file_name());
    assert_eq!(ws.media_bytes(&coffee.id).unwrap(), example("ads/coffee.mp3"));
    assert_eq!(ws.library(None).unwrap(), library, "imported once");

    // The draft starts from the head, and publishing it needs no upload.
    let draft = ws.draft().unwrap();
    assert_eq!((draft.base_version, draft.valid_days), (Some(1), 30));
    assert_eq!(draft.program, head.program);
    let published = ws.publish(&draft, "erin", "Same from the web", now).unwrap();
    assert_eq!((published.version, published.new_media), (2, 0));
    assert_eq!(fx.verified(2).program, head.program);
    assert!(files_in(&ws.uploads_dir()).iter().all(|n| n == "tmp"));
}
