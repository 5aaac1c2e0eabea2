//! Every parser in `schema` under property tests: the manifest (with `Limits`), the
//! planning, signature files and `verify`, key texts, the duplicate-key pre-pass,
//! every text type with `FromStr`, and the pull protocol's JSON `Head`.
//!
//! cargo-fuzz needs a nightly toolchain; these run on stable, in the normal suite.
//! Inputs never panic (errors are returned), accepted inputs round-trip through
//! their writers, hostile YAML (alias bombs, deep nesting) is refused quickly and
//! in bounded memory, and `corpus/` holds inputs each with its expected verdict.
//!
//! The default number of cases keeps this file at a few seconds in a debug build;
//! `PROPTEST_CASES=100000 cargo test -p skycast-schema --test parsers` runs longer.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::fmt::{Debug, Display};
use std::num::NonZeroU64;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant as Clock};

use chrono::{DateTime, NaiveDate, NaiveTime};
use proptest::prelude::*;
use skycast_schema::{
    check_no_duplicate_keys, verify, DailyHours, DateRange, DayRange, Head, Instant, Interrupt,
    InterruptLevel, KeyId, Limits, Manifest, ManifestError, MediaEntry, MediaId, MediaKind, MessageKey,
    Planning, PublicKey, SecretKey, ShopTarget, TimeOfDay, TimeWindow, TrustedKeys, VerifyError, Weekday,
    SCHEMA_V1,
};

// ---------------------------------------------------------------------------
// Bounded memory: a counting allocator, per thread (tests run in parallel).

struct CountingAlloc;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    // `try_with`: the allocator also runs while thread locals are torn down.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counters
// are const-initialised thread locals, which never allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        count(-(layout.size() as isize));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Runs `f` and returns its result, the most heap it held at once on this thread
/// (bytes) and how long it took.
fn measured<T>(f: impl FnOnce() -> T) -> (T, usize, Duration) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    let clock = Clock::now();
    let out = f();
    let took = clock.elapsed();
    let peak = PEAK.with(Cell::get) - start;
    (out, peak.max(0) as usize, took)
}

const MIB: usize = 1024 * 1024;

// ---------------------------------------------------------------------------
// Shared inputs.

/// Cases per property: small by default, `PROPTEST_CASES` for a longer run.
fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig::with_cases(cases)
}

const PILOT_PLANNING: &str = include_str!("../../content-example/planning.yaml");
const PILOT_PLANNING_V2: &str = include_str!("../../content-example/planning-v2.yaml");

fn key() -> SecretKey {
    SecretKey::from_seed([7; 32])
}

fn trusted() -> TrustedKeys {
    TrustedKeys::new([key().public()])
}

fn instant(text: &str) -> Instant {
    text.parse().unwrap()
}

/// A planning made into a manifest with the types, as `publish` does (ids and
/// sizes are stand-ins: the tests have no MP3s).
fn manifest_of(planning: &Planning) -> Manifest {
    let id = |path: &str| MediaId::of(path.as_bytes());
    let media = planning
        .media_paths()
        .into_iter()
        .enumerate()
        .map(|(i, path)| {
            let meta = planning.media.get(path).cloned().unwrap_or_default();
            MediaEntry {
                id: id(path),
                size: 100_000 + i as u64,
                duration_ms: 30_000 + i as u64,
                title: meta.title.unwrap_or_else(|| path.to_string()),
                artist: meta.artist,
                kind: meta.kind.unwrap_or(MediaKind::Music),
                loudness_lufs: Some(-18.25 + i as f64),
            }
        })
        .collect();
    let program = planning
        .program
        .clone()
        .try_map_media(|_, path| Ok::<_, Infallible>(id(&path)))
        .unwrap();
    Manifest {
        schema: SCHEMA_V1.into(),
        version: NonZeroU64::new(3).unwrap(),
        published_at: instant("2026-11-22T09:14:03Z"),
        expires_at: instant("2026-12-22T09:14:03Z"),
        published_by: "alice".into(),
        timezone: planning.timezone.clone(),
        media,
        program,
    }
}

/// The pilot's real planning made into a manifest, plus one interrupt so every
/// section is present.
fn pilot_manifest() -> Manifest {
    let mut manifest = manifest_of(&Planning::parse(PILOT_PLANNING).unwrap());
    manifest.program.interrupts.push(Interrupt {
        id: "flash-1".into(),
        media: MediaId::of(b"ads/coffee.mp3"),
        level: InterruptLevel::Announcement,
        shops: vec!["tag:remote".parse().unwrap()],
        not_before: Some(instant("2026-11-22T09:00:00Z")),
        not_after: Some(instant("2026-11-22T10:00:00Z")),
        start: None,
        after: None,
    });
    manifest.validate(&Limits::default()).unwrap();
    manifest
}

/// Parses, and for an accepted manifest checks that what it writes reads back the same.
fn parse_and_round_trip(bytes: &[u8]) -> Result<Manifest, ManifestError> {
    let m = Manifest::parse(bytes)?;
    let yaml = m.to_yaml();
    let again = Manifest::parse(yaml.as_bytes())
        .unwrap_or_else(|e| panic!("an accepted manifest's own YAML is refused: {e}\n{yaml}"));
    assert_eq!(again, m, "the manifest changed through its YAML:\n{yaml}");
    Ok(m)
}

/// Everything a YAML byte string can be fed to: none of them may panic.
fn feed_every_yaml_parser(bytes: &[u8]) {
    let _ = parse_and_round_trip(bytes);
    let _ = verify(bytes, bytes, &trusted(), &Limits::default());
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = check_no_duplicate_keys(text);
        let _ = Planning::parse(text);
    }
}

/// One edit of a byte string; positions are taken modulo its length.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Splice(usize, &'static str),
    Truncate(usize),
    Duplicate(usize, usize),
}

/// Fragments that mean something to YAML or to our fields.
const TOKENS: &[&str] = &[
    "&a ",
    "*a",
    "<<: *a\n",
    "!!binary ",
    "!tag ",
    "~",
    "null",
    "- ",
    "? ",
    ": ",
    "\n  ",
    "\n",
    "{",
    "}",
    "[",
    "]",
    ",",
    "'",
    "\"",
    "\"\\u0000\"",
    "#",
    "|\n",
    ">-\n",
    "---\n",
    "...\n",
    "%YAML 1.1\n",
    "\t",
    "\u{feff}",
    "\u{85}",
    "1e400",
    "-0",
    ".nan",
    ".inf",
    "18446744073709551616",
    "-9223372036854775809",
    "0x7f",
    "0o17",
    "true",
    "yes",
    "2026-02-30",
    "24:00",
    "23:59:60Z",
    "tag:",
    "all",
    "version: 4\n",
    "media: []\n",
];

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1..=u8::MAX).prop_map(|(i, m)| Edit::Flip(i, m)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), prop::sample::select(TOKENS)).prop_map(|(i, t)| Edit::Splice(i, t)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), 1..200usize).prop_map(|(i, n)| Edit::Duplicate(i, n)),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let n = bytes.len();
        match *e {
            Edit::Flip(i, mask) if n > 0 => bytes[i % n] ^= mask,
            Edit::Insert(i, b) => bytes.insert(i % (n + 1), b),
            Edit::Delete(i) if n > 0 => {
                bytes.remove(i % n);
            }
            Edit::Splice(i, token) => {
                let at = i % (n + 1);
                bytes.splice(at..at, token.bytes());
            }
            Edit::Truncate(i) => bytes.truncate(i % (n + 1)),
            Edit::Duplicate(i, len) if n > 0 => {
                let at = i % n;
                let piece = bytes[at..(at + len).min(n)].to_vec();
                bytes.splice(at..at, piece);
            }
            _ => {}
        }
    }
    bytes
}

/// Text made of YAML's punctuation, names and numbers, so that much of it parses
/// as YAML and reaches the field checks.
fn yamlish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        prop::sample::select(TOKENS).prop_map(str::to_string),
        "[a-z_]{1,12}: ",
        "[a-z0-9:.-]{1,20}",
        "\n {0,6}",
        ".{0,4}",
    ];
    prop::collection::vec(piece, 0..60).prop_map(|v| v.concat())
}

// ---------------------------------------------------------------------------
// Manifest, planning, duplicate keys.

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic_any_yaml_parser(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        feed_every_yaml_parser(&bytes);
    }

    #[test]
    fn yaml_like_text_never_panics_any_yaml_parser(text in yamlish()) {
        feed_every_yaml_parser(text.as_bytes());
    }

    #[test]
    fn mutated_pilot_manifests_never_panic_and_accepted_ones_round_trip(
        edits in prop::collection::vec(edit(), 1..8)
    ) {
        let bytes = apply(pilot_manifest().to_yaml().into_bytes(), &edits);
        feed_every_yaml_parser(&bytes);
    }

    #[test]
    fn mutated_pilot_plannings_never_panic_and_accepted_ones_publish_as_manifests_that_round_trip(
        which in any::<bool>(),
        edits in prop::collection::vec(edit(), 1..8)
    ) {
        let text = if which { PILOT_PLANNING } else { PILOT_PLANNING_V2 };
        let bytes = apply(text.as_bytes().to_vec(), &edits);
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = check_no_duplicate_keys(text);
            if let Ok(planning) = Planning::parse(text) {
                let manifest = manifest_of(&planning);
                if manifest.validate(&Limits::default()).is_ok() {
                    let again = parse_and_round_trip(manifest.to_yaml().as_bytes());
                    prop_assert_eq!(again.ok(), Some(manifest));
                }
            }
        }
    }

    #[test]
    fn valid_manifests_round_trip_through_their_yaml(
        version in 1..=u64::MAX,
        published in 0i64..=253_402_300_799 - 400 * 86_400,
        valid_secs in 1i64..=365 * 86_400,
        published_by in "\\PC{1,24}",
        title in any::<String>(),
        artist in proptest::option::of(any::<String>()),
        size in 1..=Limits::default().max_media_bytes,
        duration_ms in any::<u64>(),
        loudness in proptest::option::of(prop::num::f64::NORMAL | prop::num::f64::ZERO | prop::num::f64::SUBNORMAL),
        priority in any::<i32>(),
        fade_ms in 0u32..=10_000,
        duck_db in proptest::option::of(-60.0f32..=0.0),
        minutes_before in 1u32..=1440,
        interrupt_id in "[a-z0-9][a-z0-9_-]{0,63}",
        timezone in prop::sample::select(&["Europe/Paris", "UTC", "America/St_Johns", "Asia/Kathmandu", "Etc/GMT+12"][..]),
    ) {
        prop_assume!(!published_by.trim().is_empty() && !title.trim().is_empty());
        let mut m = pilot_manifest();
        m.version = NonZeroU64::new(version).unwrap();
        m.published_at = Instant(DateTime::from_timestamp(published, 0).unwrap());
        m.expires_at = Instant(DateTime::from_timestamp(published + valid_secs, 0).unwrap());
        m.published_by = published_by;
        m.timezone = timezone.to_string();
        m.media[0].title = title;
        m.media[0].artist = artist;
        m.media[0].size = size;
        m.media[0].duration_ms = duration_ms;
        m.media[0].loudness_lufs = loudness;
        m.program.schedule[0].priority = priority;
        m.program.playback.fade_ms = fade_ms;
        m.program.playback.messages.closing.duck_db = duck_db;
        m.program.interrupts[0].id = interrupt_id;
        m.program.interrupts[0].not_before = Some(m.published_at);
        m.program.interrupts[0].not_after = Some(m.expires_at);
        for shop in m.program.shops.values_mut() {
            if let Some(c) = &mut shop.closing_announcement {
                c.minutes_before = minutes_before;
            }
        }
        m.validate(&Limits::default()).unwrap();
        let yaml = m.to_yaml();
        let again = Manifest::parse(yaml.as_bytes());
        prop_assert!(again.is_ok(), "refused its own YAML: {:?}\n{}", again.err(), yaml);
        prop_assert_eq!(again.unwrap(), m);
    }

    #[test]
    fn manifests_over_the_byte_limit_are_refused_before_parsing(
        max in 0usize..4096,
        extra in 1usize..4096,
        fill in any::<u8>(),
    ) {
        let limits = Limits { max_manifest_bytes: max, ..Limits::default() };
        let bytes = vec![fill; max + extra];
        let err = Manifest::parse_with(&bytes, &limits).unwrap_err();
        prop_assert!(matches!(err, ManifestError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn media_larger_than_the_limit_are_refused(max in 1u64..u64::MAX, over in 1u64..=u64::MAX) {
        let mut m = pilot_manifest();
        m.media[0].size = max.saturating_add(over);
        let limits = Limits { max_media_bytes: max, ..Limits::default() };
        let yaml = m.to_yaml();
        let err = Manifest::parse_with(yaml.as_bytes(), &limits).unwrap_err();
        prop_assert!(err.to_string().contains("media[0].size"), "{err}");
    }

    #[test]
    fn repeated_keys_are_refused_at_any_depth_and_distinct_keys_pass(
        keys in prop::collection::btree_set("[a-z][a-z0-9_]{0,8}", 1..8),
        depth in 0usize..6,
        pick in any::<prop::sample::Index>(),
        flow in any::<bool>(),
    ) {
        let keys: Vec<String> = keys.into_iter().collect();
        let nest = |body: String| -> String {
            let mut text = body;
            for level in 0..depth {
                text = if flow { format!("{{n{level}: {text}}}") } else { format!("[{text}]") };
            }
            text
        };
        let mapping = |keys: &[String]| -> String {
            let pairs: Vec<String> = keys.iter().enumerate().map(|(i, k)| format!("{k}: {i}")).collect();
            format!("{{{}}}", pairs.join(", "))
        };
        let distinct = nest(mapping(&keys));
        prop_assert!(check_no_duplicate_keys(&distinct).is_ok(), "{}", distinct);
        let mut repeated = keys.clone();
        repeated.push(pick.get(&keys).clone());
        let doubled = nest(mapping(&repeated));
        let err = check_no_duplicate_keys(&doubled).unwrap_err().to_string();
        let wanted = format!("duplicate key `{}`", pick.get(&keys));
        prop_assert!(err.contains(&wanted), "{err} for {doubled}");
    }
}

#[test]
fn the_pilot_manifest_and_plannings_are_accepted() {
    let m = pilot_manifest();
    assert_eq!(parse_and_round_trip(m.to_yaml().as_bytes()).unwrap(), m);
    for text in [PILOT_PLANNING, PILOT_PLANNING_V2] {
        Planning::parse(text).unwrap();
    }
}

/// The classic "billion laughs": ten aliases of ten aliases ... 10^9 strings if
/// expanded, as the entries of one mapping. The duplicate-key pre-pass stops it
/// after two values per byte of text.
fn alias_bomb_entries() -> Vec<String> {
    let mut entries = vec!["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]".to_string()];
    for i in 1..10 {
        let p = i - 1;
        entries.push(format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]"
        ));
    }
    entries
}

fn alias_bomb() -> String {
    alias_bomb_entries().iter().map(|e| format!("{e}\n")).collect()
}

#[test]
fn a_yaml_alias_bomb_is_refused_quickly_in_bounded_memory() {
    let bomb = alias_bomb();
    // As a whole document, after a valid manifest, and as the value of a known field.
    let manifest = pilot_manifest().to_yaml();
    let manifest_bomb = format!("{manifest}{bomb}");
    let flow = format!("{{{}}}", alias_bomb_entries().join(", "));
    let field_bomb = manifest.replace("published_by: alice", &format!("published_by: {flow}"));
    assert_ne!(field_bomb, manifest);
    for text in [bomb.clone(), manifest_bomb, field_bomb] {
        let ((dup, manifest, planning), peak, took) = measured(|| {
            (
                check_no_duplicate_keys(&text).map_err(|e| e.to_string()),
                Manifest::parse(text.as_bytes()).map_err(|e| e.to_string()),
                Planning::parse(&text).map_err(|e| e.to_string()),
            )
        });
        assert!(manifest.is_err(), "manifest accepted an alias bomb");
        assert!(planning.is_err(), "planning accepted an alias bomb");
        if text == bomb {
            let err = dup.expect_err("the pre-pass expanded the bomb");
            assert!(err.contains("aliases (`*name`) must not multiply it"), "{err}");
        }
        eprintln!(
            "alias bomb of {} bytes: refused in {took:?}, {} KiB held",
            text.len(),
            peak / 1024
        );
        assert!(took < Duration::from_millis(500), "took {took:?}");
        assert!(peak < 4 * MIB, "held {} MiB", peak / MIB);
    }
    // After a long valid prefix, serde_norway's own limit (100 alias jumps per event
    // of the document) would let the bomb run for minutes; the budget does not.
    let padding: String = (0..5_000).map(|i| format!("k{i}: [1, 2, 3]\n")).collect();
    let padded = format!("{padding}{bomb}");
    let (result, peak, took) = measured(|| check_no_duplicate_keys(&padded));
    assert!(result.is_err());
    eprintln!(
        "alias bomb after {} KiB of padding: refused in {took:?}, {} KiB held",
        padded.len() / 1024,
        peak / 1024
    );
    assert!(
        took < Duration::from_secs(2) && peak < 64 * MIB,
        "{took:?}, {peak} bytes"
    );
}

#[test]
fn deeply_nested_yaml_is_refused_without_overflowing_the_stack() {
    for depth in [200, 10_000, 100_000] {
        let flow_seq = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let flow_map = format!("{}x{}", "{a: ".repeat(depth), "}".repeat(depth));
        let block = (0..depth.min(2_000))
            .map(|i| format!("{}k:\n", " ".repeat(i)))
            .collect::<String>();
        for text in [flow_seq, flow_map, block] {
            let (results, peak, took) = measured(|| {
                (
                    check_no_duplicate_keys(&text).is_err(),
                    Manifest::parse(text.as_bytes()).is_err(),
                    Planning::parse(&text).is_err(),
                )
            });
            assert_eq!(results, (true, true, true), "depth {depth}");
            assert!(took < Duration::from_secs(5), "depth {depth} took {took:?}");
            assert!(peak < 64 * MIB, "depth {depth} held {} MiB", peak / MIB);
        }
    }
}

#[test]
fn a_large_manifest_parses_in_memory_proportional_to_its_size() {
    // Half a MiB of media entries (the default limit is 8 MiB).
    let mut m = pilot_manifest();
    let template = m.media[0].clone();
    let mut n = 0u32;
    while m.to_yaml().len() < 512 * 1024 {
        for _ in 0..256 {
            n += 1;
            let mut e = template.clone();
            e.id = MediaId::of(&n.to_le_bytes());
            e.title = format!("Track {n}");
            m.media.push(e);
        }
    }
    let yaml = m.to_yaml();
    let (parsed, peak, took) = measured(|| Manifest::parse(yaml.as_bytes()).map(|p| p.media.len()));
    assert_eq!(parsed.unwrap(), m.media.len());
    eprintln!(
        "{} KiB manifest: parsed in {took:?}, {} KiB held",
        yaml.len() / 1024,
        peak / 1024
    );
    assert!(
        peak < 40 * yaml.len(),
        "{} KiB of YAML held {} MiB",
        yaml.len() / 1024,
        peak / MIB
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

// ---------------------------------------------------------------------------
// Signature files, verify, key texts.

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn arbitrary_signature_files_are_refused(sig in prop::collection::vec(any::<u8>(), 0..600)) {
        let manifest = pilot_manifest().to_yaml();
        let result = verify(manifest.as_bytes(), &sig, &trusted(), &Limits::default());
        prop_assert!(result.is_err());
    }

    #[test]
    fn signature_files_with_arbitrary_fields_are_refused(
        algorithm in prop_oneof![Just("ed25519".to_string()), "\\PC{0,12}"],
        key_id in prop_oneof![Just(key().public().id().to_string()), "[0-9a-fA-F]{0,20}", "\\PC{0,20}"],
        signature in prop_oneof!["[A-Za-z0-9+/=]{0,100}", "\\PC{0,100}"],
    ) {
        let manifest = pilot_manifest().to_yaml();
        let sig = format!("algorithm: {algorithm:?}\nkey_id: {key_id:?}\nsignature: {signature:?}\n");
        let result = verify(manifest.as_bytes(), sig.as_bytes(), &trusted(), &Limits::default());
        prop_assert!(result.is_err());
    }

    #[test]
    fn mutated_signature_files_verify_only_the_signed_bytes_by_the_signing_key(edits in prop::collection::vec(edit(), 1..6)) {
        let manifest = pilot_manifest().to_yaml();
        let good = key().sign(manifest.as_bytes());
        let sig = apply(good.clone().into_bytes(), &edits);
        if let Ok(v) = verify(manifest.as_bytes(), &sig, &trusted(), &Limits::default()) {
            // Only edits that keep the signed fields (a comment, spacing) may pass.
            prop_assert_eq!(v.bytes(), manifest.as_bytes());
            prop_assert_eq!(v.key_id(), key().public().id());
        }
    }

    #[test]
    fn any_change_to_signed_manifest_bytes_is_refused(edits in prop::collection::vec(edit(), 1..4)) {
        let manifest = pilot_manifest().to_yaml().into_bytes();
        let sig = key().sign(&manifest);
        let changed = apply(manifest.clone(), &edits);
        prop_assume!(changed != manifest);
        let result = verify(&changed, sig.as_bytes(), &trusted(), &Limits::default());
        prop_assert!(matches!(result, Err(VerifyError::BadSignature { .. })), "{:?}", result.err());
    }

    #[test]
    fn any_signed_manifest_verifies_with_the_right_key_only(seed in any::<[u8; 32]>(), other in any::<[u8; 32]>()) {
        prop_assume!(seed != other);
        let signer = SecretKey::from_seed(seed);
        let manifest = pilot_manifest().to_yaml().into_bytes();
        let sig = signer.sign(&manifest);
        let ok = verify(&manifest, sig.as_bytes(), &TrustedKeys::new([signer.public()]), &Limits::default());
        prop_assert!(ok.is_ok());
        let other = TrustedKeys::new([SecretKey::from_seed(other).public()]);
        let refused = verify(&manifest, sig.as_bytes(), &other, &Limits::default());
        prop_assert!(matches!(refused, Err(VerifyError::UntrustedKey { .. })), "{:?}", refused.err());
    }

    #[test]
    fn key_texts_round_trip_and_any_text_parses_without_panic(seed in any::<[u8; 32]>(), garbage in "\\PC{0,80}") {
        let secret = SecretKey::from_seed(seed);
        let public = secret.public();
        prop_assert_eq!(public.to_string().parse::<PublicKey>().unwrap(), public);
        prop_assert_eq!(SecretKey::from_file_text(&secret.to_file_text()).unwrap().public(), public);
        prop_assert_eq!(public.id().to_string().parse::<KeyId>().unwrap(), public.id());
        let _ = garbage.parse::<PublicKey>();
        let _ = garbage.parse::<KeyId>();
        let _ = SecretKey::from_file_text(&garbage);
        let prefixed = format!("ed25519:{garbage}");
        let _ = prefixed.parse::<PublicKey>();
        let _ = SecretKey::from_file_text(&format!("skycast-ed25519-secret:{garbage}"));
    }
}

#[test]
fn signature_files_over_4096_bytes_are_refused_before_parsing() {
    let manifest = pilot_manifest().to_yaml();
    let good = key().sign(manifest.as_bytes());
    let padded = format!("{good}#{}\n", " ".repeat(4096));
    let err = verify(
        manifest.as_bytes(),
        padded.as_bytes(),
        &trusted(),
        &Limits::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("4096"), "{err}");
    let bomb = format!("{}algorithm: *a9\n", alias_bomb());
    let (result, peak, took) = measured(|| {
        verify(
            manifest.as_bytes(),
            bomb.as_bytes(),
            &trusted(),
            &Limits::default(),
        )
    });
    assert!(
        matches!(result, Err(VerifyError::MalformedSignature(_))),
        "{result:?}"
    );
    assert!(
        took < Duration::from_secs(1) && peak < 4 * MIB,
        "{took:?}, {peak} bytes"
    );
}

// ---------------------------------------------------------------------------
// Text types: any text never panics, values round-trip through Display.

/// `value` written and read back is itself, and its text is stable.
fn round_trips<T>(value: &T) -> Result<(), TestCaseError>
where
    T: FromStr + Display + PartialEq + Debug,
    T::Err: Display,
{
    let text = value.to_string();
    match text.parse::<T>() {
        Ok(again) => {
            prop_assert_eq!(&again, value, "through {:?}", text);
            prop_assert_eq!(again.to_string(), text);
            Ok(())
        }
        Err(e) => Err(TestCaseError::fail(format!(
            "{value:?} wrote {text:?}, which is refused: {e}"
        ))),
    }
}

/// Parsing `text` does not panic, and what it accepts round-trips.
fn parses_or_refuses<T>(text: &str) -> Result<(), TestCaseError>
where
    T: FromStr + Display + PartialEq + Debug,
    T::Err: Display,
{
    match text.parse::<T>() {
        Ok(value) => round_trips(&value),
        Err(e) => {
            // Errors quote the input; they must stay printable without panicking.
            let _ = e.to_string();
            Ok(())
        }
    }
}

fn plain_name() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9_-]{0,63}"
}

fn media_id() -> impl Strategy<Value = MediaId> {
    any::<[u8; 8]>().prop_map(|b| MediaId::of(&b))
}

fn date() -> impl Strategy<Value = NaiveDate> {
    // Years 0000-9999: the four-digit years the formats write.
    (0i32..=9999, 1u32..=366).prop_filter_map("a real day", |(y, d)| NaiveDate::from_yo_opt(y, d))
}

fn time_of_day() -> impl Strategy<Value = TimeOfDay> {
    (0u32..24, 0u32..60).prop_map(|(h, m)| TimeOfDay(NaiveTime::from_hms_opt(h, m, 0).unwrap()))
}

fn weekday() -> impl Strategy<Value = Weekday> {
    prop::sample::select(&Weekday::ALL[..])
}

fn time_window() -> impl Strategy<Value = TimeWindow> {
    (time_of_day(), time_of_day())
        .prop_filter("start and end differ", |(a, b)| a != b)
        .prop_map(|(start, end)| TimeWindow { start, end })
}

fn shop_target() -> impl Strategy<Value = ShopTarget> {
    prop_oneof![
        Just(ShopTarget::All),
        plain_name().prop_map(ShopTarget::Tag),
        plain_name()
            .prop_filter("`all` is the target of every shop", |n| n != "all")
            .prop_map(ShopTarget::Shop),
    ]
}

fn message_key() -> impl Strategy<Value = MessageKey> {
    prop_oneof![
        plain_name().prop_map(|id| MessageKey::Interrupt { id }),
        (media_id(), date(), time_of_day()).prop_map(|(media, date, time)| MessageKey::FixedTime {
            media,
            date,
            time
        }),
        date().prop_map(|date| MessageKey::Closing { date }),
        (media_id(), any::<u32>()).prop_map(|(media, every)| MessageKey::EveryTracks { media, every }),
    ]
}

/// Text shaped like the calendar and key formats, with near misses.
fn calendar_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,5}-[0-9]{1,2}-[0-9]{1,2}(\\.\\.[+-]?[0-9]{1,5}-[0-9]{1,2}-[0-9]{1,2})?",
        "[0-9]{1,2}:[0-9]{1,2}(-[0-9]{1,2}:[0-9]{1,2})?",
        "(mon|tue|wed|thu|fri|sat|sun|Mon|x)(-(mon|tue|wed|thu|fri|sat|sun|))?",
        "[0-9]{4}-[01][0-9]-[0-3][0-9][Tt ][0-2][0-9]:[0-5][0-9]:[0-6][0-9](\\.[0-9]{1,12})?(Z|z|[+-][0-2][0-9]:[0-5][0-9])",
        "(interrupt:|ad-at:|closing:|ad-every:|tag:|all|)[a-z0-9:T.+-]{0,80}",
        "[0-9a-f]{60,68}",
        "\\PC{0,40}",
        ".{0,20}",
    ]
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn any_text_parses_or_is_refused_without_panic_and_accepted_text_round_trips(text in calendar_like()) {
        parses_or_refuses::<ShopTarget>(&text)?;
        parses_or_refuses::<MessageKey>(&text)?;
        parses_or_refuses::<MediaId>(&text)?;
        parses_or_refuses::<TimeWindow>(&text)?;
        parses_or_refuses::<DateRange>(&text)?;
        parses_or_refuses::<Weekday>(&text)?;
        parses_or_refuses::<DayRange>(&text)?;
        parses_or_refuses::<TimeOfDay>(&text)?;
        parses_or_refuses::<DailyHours>(&text)?;
        parses_or_refuses::<Instant>(&text)?;
        parses_or_refuses::<KeyId>(&text)?;
        let _ = text.parse::<PublicKey>();
    }

    #[test]
    fn shop_targets_round_trip_through_display(t in shop_target()) {
        round_trips(&t)?;
    }

    #[test]
    fn message_keys_round_trip_through_display(k in message_key()) {
        round_trips(&k)?;
    }

    #[test]
    fn media_ids_round_trip_through_display(id in media_id()) {
        round_trips(&id)?;
    }

    #[test]
    fn calendar_values_round_trip_through_display(
        day in weekday(),
        last in weekday(),
        time in time_of_day(),
        window in time_window(),
        (a, b) in (date(), date()),
        closed in any::<bool>(),
        secs in -62_135_596_800i64..=253_402_300_799,
    ) {
        round_trips(&day)?;
        round_trips(&DayRange { first: day, last })?;
        round_trips(&time)?;
        round_trips(&window)?;
        round_trips(&DateRange { first: a.min(b), last: a.max(b) })?;
        round_trips(&if closed { DailyHours::Closed } else { DailyHours::Open(window) })?;
        round_trips(&Instant(DateTime::from_timestamp(secs, 0).unwrap()))?;
    }
}

// ---------------------------------------------------------------------------
// The pull protocol's JSON bodies.

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic_the_head_reader(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = serde_json::from_slice::<Head>(&bytes);
    }

    #[test]
    fn json_like_head_bodies_never_panic(
        version in prop_oneof!["[0-9]{1,25}", "-[0-9]{1,5}", "[0-9]e[0-9]{1,4}", "\"[0-9]{1,4}\"", Just("null".to_string())],
        extra in "\\PC{0,30}",
    ) {
        for body in [
            format!("{{\"version\": {version}}}"),
            format!("{{\"version\": {version}, \"published_at\": {extra:?}, \"manifest\": {extra:?}}}"),
            format!("{{\"version\": {version}, {extra}}}"),
        ] {
            let _ = serde_json::from_str::<Head>(&body);
        }
    }

    #[test]
    fn heads_round_trip_through_json(
        version in any::<u64>(),
        published_at in proptest::option::of(any::<String>()),
        manifest in proptest::option::of(any::<String>()),
        root_version in proptest::option::of(any::<u64>()),
    ) {
        let head = Head { version, published_at, manifest, commands_pending: false, root_version };
        let json = serde_json::to_vec(&head).unwrap();
        prop_assert_eq!(serde_json::from_slice::<Head>(&json).unwrap(), head);
    }
}

#[test]
fn head_bodies_with_numbers_out_of_range_are_refused() {
    for body in [
        r#"{"version": 18446744073709551616}"#,
        r#"{"version": -1}"#,
        r#"{"version": 1e400}"#,
        r#"{"version": 1.5}"#,
        r#"{"published_at": "x"}"#,
    ] {
        assert!(serde_json::from_str::<Head>(body).is_err(), "{body}");
    }
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(serde_json::from_str::<Head>(&deep).is_err());
}

// ---------------------------------------------------------------------------
// The committed corpus.

/// Each file in `tests/corpus/` is named `<parser>.<accept|refuse>.<what>`; the
/// parser is `manifest`, `planning`, `signature` (over
/// `manifest.accept.pilot.yaml`, by the test key), `yaml` (the duplicate-key
/// pre-pass) or `head` (JSON).
#[test]
fn corpus_inputs_get_their_expected_verdicts_without_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let signed = std::fs::read(dir.join("manifest.accept.pilot.yaml")).unwrap();
    let mut seen = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let mut parts = name.splitn(3, '.');
        let (parser, verdict) = (parts.next().unwrap(), parts.next().unwrap());
        let bytes = std::fs::read(&path).unwrap();
        let text = std::str::from_utf8(&bytes);
        let (outcome, peak, took) = measured(|| -> Result<(), String> {
            match parser {
                "manifest" => parse_and_round_trip(&bytes)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                "planning" => Planning::parse(text.map_err(|e| e.to_string())?)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                "signature" => verify(&signed, &bytes, &trusted(), &Limits::default())
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                "yaml" => {
                    check_no_duplicate_keys(text.map_err(|e| e.to_string())?).map_err(|e| e.to_string())
                }
                "head" => serde_json::from_slice::<Head>(&bytes)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                other => panic!("{name}: unknown parser `{other}`"),
            }
        });
        match (verdict, &outcome) {
            ("accept", Ok(())) | ("refuse", Err(_)) => {}
            _ => panic!("{name}: expected {verdict}, got {outcome:?}"),
        }
        assert!(took < Duration::from_secs(2), "{name} took {took:?}");
        assert!(peak < 64 * MIB, "{name} held {} MiB", peak / MIB);
        seen += 1;
    }
    assert!(seen >= 30, "only {seen} corpus files");
}
