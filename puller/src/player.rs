//! The player: follows the shop's schedule from the local, verified copy and renders
//! what the shop hears into an output, block by block. The output paces the blocks,
//! so the count of rendered frames is the player's clock; on a sound device that
//! count is steered onto the wall clock (see [`crate::audio::Discipline`]).
//!
//! Music that stops without ending (the device went away, the previous run died) is
//! remembered with its position; when sound is back it goes on where the schedule is
//! now, if that is still inside the track and its playlist still plays.
//!
//! Music plays from the resolver's picks; a message that `cut`s fades the music out,
//! plays, and hands back as its `after` mode says; a `boundary` message waits for
//! the track's end. A new manifest is taken at once (the track playing goes on from
//! the file it has open), so schedule changes show at the next track boundary and a
//! new `cut` interrupt at the next block.

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use skycast_schema::playback::gain_db;
use skycast_schema::report::{EventEntry, EventKind, NowPlaying, OutputState};
use skycast_schema::{
    AfterMode, History, Manifest, MediaId, MediaKind, Message, MessageKey, MessageSource, MusicPick, Next,
    Priority, ShopSchedule, Verified,
};

use crate::audio::{
    db_to_gain, frames_duration, frames_in, AudioError, Change, Discipline, Down, OutputSpec, Pace, Ramp,
    SupervisedOutput, Track, CHANNELS, SAMPLE_RATE,
};
use crate::commands::media_damaged;
use crate::live::Live;
use crate::local_store::{write_atomic, Layout, StoreError};
use crate::outbox::{event, rfc3339};
use crate::play_log::{CutShort, Outcome, PlayLog, PlayLogError, PlayStart};

/// Frames rendered per block: about 23 ms, the reaction time to a new `cut` message.
const BLOCK_FRAMES: usize = 1024;
/// Longest stretch of silence rendered at once while closed or idle.
const IDLE_STEP: Duration = Duration::from_millis(250);
/// Progress of the playing rows is saved this often (audio time).
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// A deck being cut by a higher-priority message fades out this fast.
const MESSAGE_CUT_FADE: Duration = Duration::from_millis(100);
/// The audio clock goes to the live state this often (wall time), and to
/// `state.sqlite` for `status` every fifth time.
const CLOCK_READING_EVERY: Duration = Duration::from_secs(1);
/// Music cut short is not taken up again this close to its end.
const RESUME_MARGIN: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum PlayerError {
    #[error(transparent)]
    Audio(#[from] AudioError),
    #[error(transparent)]
    PlayLog(#[from] PlayLogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start the player thread: {0}")]
    Thread(std::io::Error),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Trust(#[from] crate::trust::TrustError),
}

/// How the player is set up.
#[derive(Debug, Clone)]
pub struct PlayerOptions {
    pub shop: String,
    pub output: OutputSpec,
    /// The instant the player's clock starts at; `None` = the (server-corrected) system clock.
    pub clock_start: Option<DateTime<Utc>>,
    /// Seconds of audio per second of wall time (1.0 in a shop; more in tests and demos).
    pub clock_rate: f64,
    /// Server clock minus local clock, applied when the clock is not set by `clock_start`.
    pub clock_correction_ms: i64,
    /// The puller's data directory (media, `current.m3u`, `state.sqlite`).
    pub data: PathBuf,
    /// Where the player says what it plays and how its output is, for reports.
    pub live: Arc<Live>,
}

/// Something the player did, for the readable lines `run` prints.
#[derive(Debug, Clone, PartialEq)]
pub enum PlayEvent {
    Started {
        at: DateTime<Utc>,
        /// The shop's local time, `HH:MM:SS`.
        local: String,
        kind: &'static str,
        title: String,
        artist: Option<String>,
        source: String,
        position: Duration,
        duration: Duration,
    },
    Closed {
        at: DateTime<Utc>,
        reopens: Option<DateTime<Utc>>,
    },
    Swapped {
        version: u64,
    },
    Problem {
        message: String,
    },
}

impl std::fmt::Display for PlayEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mmss = |d: Duration| format!("{}:{:02}", d.as_secs() / 60, d.as_secs() % 60);
        match self {
            PlayEvent::Started {
                local,
                kind,
                title,
                artist,
                source,
                position,
                duration,
                ..
            } => {
                write!(f, "{local} ▶ {kind:<9} {title}")?;
                if let Some(a) = artist {
                    write!(f, " — {a}")?;
                }
                write!(f, "  [{}] {}", readable_source(source), mmss(*duration))?;
                if !position.is_zero() {
                    write!(f, " (from {})", mmss(*position))?;
                }
                Ok(())
            }
            PlayEvent::Closed { at, reopens } => match reopens {
                Some(r) => write!(f, "{at} ■ closed: silent, output released until {r}"),
                None => write!(f, "{at} ■ closed: silent, output released"),
            },
            PlayEvent::Swapped { version } => write!(f, "⇄ version {version} is active"),
            PlayEvent::Problem { message } => write!(f, "! {message}"),
        }
    }
}

/// A message key as a person reads it (`ad-at:<id>:2026-12-05T10:30` → `at 10:30`);
/// anything else (a playlist) as it is.
fn readable_source(source: &str) -> String {
    match source.parse::<MessageKey>() {
        Ok(MessageKey::FixedTime { time, .. }) => format!("at {time}"),
        Ok(MessageKey::EveryTracks { every, .. }) => format!("every {every} tracks"),
        Ok(MessageKey::Closing { .. }) => "closing".into(),
        Ok(MessageKey::Interrupt { id }) => id,
        Err(_) => source.to_string(),
    }
}

enum Command {
    Install(Arc<Verified<Manifest>>),
    Stop,
}

/// The running player; dropping it without [`PlayerHandle::stop`] stops it too.
pub struct PlayerHandle {
    commands: Sender<Command>,
    thread: Option<JoinHandle<Result<(), PlayerError>>>,
    /// Closed when the player thread ends: see [`PlayerHandle::exited`].
    exited: tokio::sync::watch::Receiver<()>,
}

impl PlayerHandle {
    /// True once the player thread has ended (after an error it reported).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Completes once the player thread has ended, however it ended (returned,
    /// failed or panicked). It borrows nothing, so `run` can wait on it beside the
    /// network in one `select!`.
    pub fn exited(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut exited = self.exited.clone();
        async move {
            // Nothing is ever sent: `changed` fails only once the thread dropped the sender.
            while exited.changed().await.is_ok() {}
        }
    }

    /// Hands a newly installed version to the player; it takes effect as described
    /// in the module docs.
    pub fn install(&self, manifest: Arc<Verified<Manifest>>) {
        let _ = self.commands.send(Command::Install(manifest));
    }

    /// Stops playing, closing the play log rows and the output; returns the
    /// error the player stopped on, if it stopped on its own.
    pub fn stop(mut self) -> Result<(), PlayerError> {
        let _ = self.commands.send(Command::Stop);
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(PlayerError::Thread(std::io::Error::other(
                "the player thread panicked",
            ))),
            None => Ok(()),
        }
    }
}

impl Drop for PlayerHandle {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the player on its own thread (audio output blocks to keep pace).
pub fn spawn(
    options: PlayerOptions,
    manifest: Option<Arc<Verified<Manifest>>>,
    on_event: Box<dyn FnMut(&PlayEvent) + Send>,
) -> Result<PlayerHandle, PlayerError> {
    let (tx, rx) = mpsc::channel();
    if let Some(m) = manifest {
        let _ = tx.send(Command::Install(m));
    }
    let (exit_signal, exited) = tokio::sync::watch::channel(());
    let thread = std::thread::Builder::new()
        .name("player".into())
        .spawn(move || {
            // Dropped when this closure returns or unwinds from a panic: that drop is
            // what `PlayerHandle::exited` waits for.
            let _exit_signal = exit_signal;
            let mut events = on_event;
            let result = Player::new(options, rx, &mut events).and_then(|mut p| p.run());
            if let Err(e) = &result {
                events(&PlayEvent::Problem {
                    message: format!("the player stopped: {e}"),
                });
            }
            result
        })
        .map_err(PlayerError::Thread)?;
    Ok(PlayerHandle {
        commands: tx,
        thread: Some(thread),
        exited,
    })
}

/// Who a deck plays for: the music, or a message with its resolver record.
#[derive(Clone)]
enum Role {
    Music { pick: MusicPick },
    Message { message: Message },
}

/// What happens to a deck once its fade-out ends.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fate {
    /// Keep it for later (the music under a message); `after` says how it goes on.
    Pause,
    /// End it (closing time, a message cut by a more urgent one).
    End,
}

/// One file playing, with its play log row.
struct Deck {
    track: Track,
    role: Role,
    row: String,
    media: MediaId,
    /// What reports show of it.
    now_playing: NowPlaying,
    /// Loudness normalisation, linear.
    gain: f32,
    ramp: Ramp,
    fading: Option<Fate>,
}

impl Deck {
    fn priority(&self) -> Priority {
        match &self.role {
            Role::Music { .. } => Priority::Music,
            Role::Message { message } => message.priority,
        }
    }

    fn position_ms(&self) -> u64 {
        self.track.position().as_millis() as u64
    }
}

/// The music, when a message cut it.
struct Paused {
    deck: Deck,
    after: AfterMode,
}

/// Music that stopped without ending: where it was, and when (the schedule's time).
#[derive(Debug, Clone)]
struct ResumePoint {
    media: MediaId,
    playlist: String,
    /// Its play log row, which the continuation names in `resumed_from`.
    row: String,
    position: Duration,
    at: DateTime<Utc>,
}

impl From<CutShort> for ResumePoint {
    fn from(c: CutShort) -> ResumePoint {
        ResumePoint {
            media: c.media,
            playlist: c.playlist,
            row: c.row,
            position: Duration::from_millis(c.position_ms),
            at: c.at,
        }
    }
}

struct Player<'e> {
    options: PlayerOptions,
    commands: Receiver<Command>,
    events: &'e mut (dyn FnMut(&PlayEvent) + Send),
    layout: Layout,
    log: PlayLog,
    history: History,
    manifest: Option<Arc<Verified<Manifest>>>,
    output: SupervisedOutput,
    /// What the live state last heard: output state, and the row playing.
    output_state: OutputState,
    playing_row: Option<String>,
    origin: DateTime<Utc>,
    /// Frames rendered (sound and silence): the output's clock.
    frames: u64,
    /// For an output paced by a device: steers the schedule onto the wall clock.
    clock: Option<Discipline>,
    clock_shown_at: Option<Instant>,
    clock_readings: u64,
    /// Music to go on with once sound is back (see the module docs).
    resume_point: Option<ResumePoint>,
    /// Frames already filled in the block being rendered.
    block_offset: u64,
    music: Option<Deck>,
    paused: Option<Paused>,
    message: Option<Deck>,
    /// A `cut` message waiting for the music's fade-out.
    pending: Option<Message>,
    /// Set while closed, so "closed" is announced once per closing.
    closed_announced: bool,
    last_progress: u64,
    /// One deck's samples for the block being mixed (kept to spare an allocation per block).
    scratch: Vec<f32>,
}

fn kind_label(message: &Message) -> &'static str {
    match (&message.source, message.priority) {
        (_, Priority::Urgent) => "urgent",
        (MessageSource::Closing { .. }, _) => "closing",
        (MessageSource::Interrupt { .. }, _) => "play_now",
        _ => "ad",
    }
}

impl<'e> Player<'e> {
    fn new(
        options: PlayerOptions,
        commands: Receiver<Command>,
        events: &'e mut (dyn FnMut(&PlayEvent) + Send),
    ) -> Result<Player<'e>, PlayerError> {
        let layout = Layout::new(&options.data);
        let pace = Pace(Some(options.clock_rate));
        // An output that does not open keeps the schedule, play log and reports going
        // (the run loop reports it and retries), instead of a dead player.
        let output = SupervisedOutput::open(&options.output, pace, Instant::now());
        let origin = options
            .clock_start
            .unwrap_or_else(|| Utc::now() + chrono::Duration::milliseconds(options.clock_correction_ms));
        let run_id = hex::encode(crate::random_bytes::<8>());
        let mut log = PlayLog::open(&layout.state_db(), &run_id, origin)?;
        let resume_point = log.take_cut_short().map(ResumePoint::from);
        let clock = options
            .output
            .paced_by_device()
            .then(|| Discipline::new(Instant::now(), 0, options.clock_rate));
        let history = match log.history(&options.shop)? {
            Some(h) => h,
            None => History::new(u64::from_le_bytes(crate::random_bytes::<8>())),
        };
        Ok(Player {
            options,
            commands,
            events,
            layout,
            log,
            history,
            manifest: None,
            output,
            output_state: OutputState::NotStarted,
            playing_row: None,
            origin,
            frames: 0,
            clock,
            clock_shown_at: None,
            clock_readings: 0,
            resume_point,
            block_offset: 0,
            music: None,
            paused: None,
            message: None,
            pending: None,
            closed_announced: false,
            last_progress: 0,
            scratch: vec![0f32; BLOCK_FRAMES * CHANNELS],
        })
    }

    /// The player's clock: the frame being rendered.
    fn now(&self) -> DateTime<Utc> {
        self.at_frame(self.frames + self.block_offset)
    }

    fn at_frame(&self, frame: u64) -> DateTime<Utc> {
        let frame = frame as f64 + self.clock.as_ref().map_or(0, Discipline::offset) as f64;
        self.origin + chrono::Duration::microseconds((frame * 1e6 / SAMPLE_RATE as f64) as i64)
    }

    fn run(&mut self) -> Result<(), PlayerError> {
        let mut block = vec![0f32; BLOCK_FRAMES * CHANNELS];
        loop {
            // Proof of progress for the systemd watchdog (see `crate::systemd`).
            self.options.live.player_heartbeat.beat();
            loop {
                match self.commands.try_recv() {
                    Ok(Command::Install(m)) => self.install(m),
                    Ok(Command::Stop) | Err(TryRecvError::Disconnected) => return self.shut_down(),
                    Err(TryRecvError::Empty) => break,
                }
            }
            if !self.watch_output() {
                self.idle(frames_in(IDLE_STEP));
                continue;
            }
            let Some(manifest) = self.manifest.clone() else {
                self.set_output_state(OutputState::NotStarted);
                self.idle(frames_in(IDLE_STEP));
                continue;
            };
            let schedule = match ShopSchedule::new(&manifest, &self.options.shop) {
                Ok(s) => s,
                Err(e) => {
                    self.problem(e.to_string());
                    self.manifest = None;
                    continue;
                }
            };
            let now = self.now();
            let open = schedule.open_period(now).is_some();
            if !open {
                self.fade_out_for_closing();
            }
            let due = schedule.due_messages(now, &self.history);
            if let Some(top) = due.first() {
                if top.cuts() && self.pending.is_none() && self.cut_allowed(top.priority) {
                    self.begin_cut(top.clone());
                }
            }
            block.fill(0.0);
            let sounding = self.fill(&mut block, &schedule);
            self.publish_now_playing();
            if sounding {
                self.closed_announced = false;
                self.set_output_state(OutputState::Playing);
                self.output.write(&block, Instant::now());
                self.frames += BLOCK_FRAMES as u64;
                if let Some(clock) = &mut self.clock {
                    let wait = clock.after_sound(self.frames, BLOCK_FRAMES as u64, Instant::now());
                    if !wait.is_zero() {
                        std::thread::sleep(wait);
                    }
                }
            } else {
                self.set_output_state(if open {
                    OutputState::NotStarted
                } else {
                    OutputState::IdleClosed
                });
                let step = schedule
                    .next_event_after(now)
                    .and_then(|t| (t - now).to_std().ok())
                    .map_or(IDLE_STEP, |d| d.clamp(Duration::from_millis(1), IDLE_STEP));
                if !open && !self.closed_announced {
                    self.closed_announced = true;
                    let reopens = schedule.next_opening(now);
                    tracing::info!(shop = %self.options.shop, reopens = ?reopens, "closed: output released");
                    self.emit(PlayEvent::Closed { at: now, reopens });
                }
                self.idle(frames_in(step));
            }
            if self.frames - self.last_progress >= frames_in(PROGRESS_EVERY) {
                self.save_progress();
            }
            self.show_clock();
        }
    }

    fn idle(&mut self, frames: u64) {
        self.output.idle(frames, Instant::now());
        self.frames += frames;
        if let Some(clock) = &mut self.clock {
            clock.after_silence(self.frames, frames, Instant::now());
        }
    }

    /// Puts the audio clock's reading in the live state (for reports) and, less
    /// often, in `state.sqlite` (for `status`).
    fn show_clock(&mut self) {
        let Some(clock) = &self.clock else { return };
        let now = Instant::now();
        if self
            .clock_shown_at
            .is_some_and(|at| now.duration_since(at) < CLOCK_READING_EVERY)
        {
            return;
        }
        self.clock_shown_at = Some(now);
        let reading = clock.reading(self.frames, now);
        let audio_clock = skycast_schema::report::AudioClock {
            schedule_offset_ms: reading.schedule_offset_ms,
            device_rate_ppm: reading.device_rate_ppm.map(|p| p.round() as i64),
            throttled: reading.throttled,
        };
        self.options.live.update(|s| s.audio_clock = Some(audio_clock));
        if self.clock_readings.is_multiple_of(5) {
            let at = self.now();
            if let Err(e) = self.log.record_audio_clock(at, &audio_clock) {
                tracing::warn!(error = %e, "cannot save the audio clock reading");
            }
        }
        self.clock_readings += 1;
    }

    /// Retries a down output, reports what changed; false while there is no sound.
    /// Without sound nothing is played (nor logged as played): the decks end
    /// `interrupted`, the clock runs on, and what is due when it is back plays then.
    fn watch_output(&mut self) -> bool {
        self.output.retry(Instant::now());
        if let Some(change) = self.output.take_change() {
            let at = self.now();
            let (kind, detail) = match &change {
                Change::Lost(down) => (
                    EventKind::OutputLost,
                    format!("no sound from {}: {}", self.options.output, down.reason()),
                ),
                Change::Back => (
                    EventKind::OutputBack,
                    format!("sound from {} again", self.options.output),
                ),
            };
            self.record_event(at, event(kind, detail.clone()));
            if let Change::Lost(_) = change {
                self.problem(format!("{detail}; retrying"));
            }
        }
        let state = match self.output.down() {
            None => return true,
            Some(Down::NoDevice(_)) => OutputState::NoDevice,
            Some(Down::Failed(_)) => OutputState::Error,
        };
        self.set_output_state(state);
        self.remember_music();
        self.end_all();
        false
    }

    /// Notes where the music is (playing, or paused under a message) before it is ended
    /// for lack of sound, so that it goes on from the schedule's position when sound is back.
    fn remember_music(&mut self) {
        let deck = self.music.as_ref().or(self.paused.as_ref().map(|p| &p.deck));
        let Some(deck) = deck else { return };
        let Role::Music { pick } = &deck.role else { return };
        self.resume_point = Some(ResumePoint {
            media: deck.media,
            playlist: pick.playlist.clone(),
            row: deck.row.clone(),
            position: deck.track.position(),
            at: self.now(),
        });
    }

    /// Appends a player event to the outbox and asks for a report.
    fn record_event(&mut self, at: DateTime<Utc>, entry: EventEntry) {
        if let Err(e) = self.log.event(at, entry) {
            tracing::warn!(error = %e, "cannot record a player event");
        }
        self.options.live.report_soon();
    }

    fn set_output_state(&mut self, state: OutputState) {
        if self.output_state != state {
            self.output_state = state;
            self.options.live.update(|s| s.output = state);
            self.options.live.report_soon();
        }
    }

    /// Tells the live state what plays on top (a message over the music), once per change.
    fn publish_now_playing(&mut self) {
        let top = self.message.as_ref().or(self.music.as_ref());
        let row = top.map(|d| format!("{}:{}", d.row, d.media));
        if row == self.playing_row {
            return;
        }
        self.playing_row = row;
        let now_playing = top.map(|d| d.now_playing.clone());
        self.options.live.update(|s| s.now_playing = now_playing);
        self.options.live.report_soon();
    }

    /// Opens a media file for a new play; a file whose size is not the declared one
    /// is damaged on this disk and fails like one that does not decode.
    fn open_track(&self, media: &MediaId) -> Result<Track, AudioError> {
        let path = self.layout.media_path(media);
        let declared = self
            .manifest
            .as_ref()
            .and_then(|m| m.media_entry(media))
            .map(|e| e.size);
        let found = std::fs::metadata(&path).map(|m| m.len());
        match (declared, found) {
            (Some(declared), Ok(found)) if declared != found => Err(AudioError::Open {
                path,
                source: std::io::Error::other(format!(
                    "it has {found} bytes where the manifest declares {declared}: damaged on this disk"
                )),
            }),
            _ => Track::open(&path),
        }
    }

    /// After a file failed to play: rehashes it, and when it is damaged (removed by
    /// the check) says so and asks for a sync, which downloads it again.
    fn check_damage(&mut self, media: &MediaId) {
        match self.layout.check_media(media) {
            Ok(None) => {}
            // Already reported when it was removed: the sync asked for then brings it back.
            Ok(Some(damaged)) if damaged.missing => self.options.live.sync_now(),
            Ok(Some(damaged)) => {
                let at = self.now();
                self.record_event(at, media_damaged(&damaged.id, &damaged.reason));
                self.options.live.sync_now();
                self.problem(damaged.reason);
            }
            Err(e) => self.problem(format!("cannot check media {}: {e}", media.short())),
        }
    }

    fn emit(&mut self, event: PlayEvent) {
        (self.events)(&event);
    }

    fn problem(&mut self, message: String) {
        tracing::warn!(problem = %message, "player");
        self.emit(PlayEvent::Problem { message });
    }

    fn install(&mut self, manifest: Arc<Verified<Manifest>>) {
        let version = manifest.version();
        if self.manifest.as_ref().is_some_and(|m| m.version() == version) {
            return;
        }
        self.manifest = Some(manifest);
        self.write_m3u();
        self.emit(PlayEvent::Swapped { version });
    }

    /// `current.m3u`: the playlist the shop plays now (or at its next opening).
    fn write_m3u(&mut self) {
        let Some(manifest) = self.manifest.clone() else {
            return;
        };
        let Ok(schedule) = ShopSchedule::new(&manifest, &self.options.shop) else {
            return;
        };
        let now = self.now();
        let at = match schedule.open_period(now) {
            Some(_) => now,
            None => schedule.next_opening(now).unwrap_or(now),
        };
        let Some((name, items)) = schedule.playlist_at(at) else {
            return;
        };
        let mut text = format!("#EXTM3U\n#PLAYLIST:{name}\n");
        for id in items {
            if let Some(entry) = manifest.media_entry(&id) {
                let artist = entry
                    .artist
                    .as_deref()
                    .map(|a| format!("{a} - "))
                    .unwrap_or_default();
                text.push_str(&format!(
                    "#EXTINF:{},{artist}{}\n{}\n",
                    entry.duration_ms / 1000,
                    entry.title.replace('\n', " "),
                    self.layout.media_path(&id).display()
                ));
            }
        }
        if let Err(e) = write_atomic(&self.options.data.join("current.m3u"), text.as_bytes()) {
            self.problem(format!("cannot write current.m3u: {e}"));
        }
    }

    fn current_priority(&self) -> Option<Priority> {
        match (&self.message, &self.music) {
            (Some(m), _) => Some(m.priority()),
            (None, Some(_)) => Some(Priority::Music),
            (None, None) => None,
        }
    }

    fn cut_allowed(&self, priority: Priority) -> bool {
        self.current_priority().is_none_or(|p| priority > p)
    }

    /// Starts cutting for `message`: the music fades out (or ducks), a less urgent
    /// message fades out and ends; the message starts once that is done.
    fn begin_cut(&mut self, message: Message) {
        let fade = frames_in(Duration::from_millis(self.fade_ms()));
        if let Some(deck) = &mut self.message {
            let quick = frames_in(MESSAGE_CUT_FADE);
            deck.ramp = Ramp::new(deck.ramp.current(), 0.0, quick);
            deck.fading = Some(Fate::End);
            // Music ducked under that message pauses for this one.
            if let Some(music) = &mut self.music {
                music.ramp = Ramp::new(music.ramp.current(), 0.0, quick);
                music.fading = Some(Fate::Pause);
            }
            if let Some(p) = &mut self.paused {
                p.after = message.mode.after;
            }
            self.pending = Some(message);
            return;
        }
        match (&mut self.music, message.mode.duck_db) {
            (Some(music), Some(duck_db)) if music.fading.is_none() => {
                music.ramp = Ramp::new(music.ramp.current(), db_to_gain(duck_db as f64), fade);
                self.start_message(message);
            }
            (Some(music), _) => {
                music.ramp = Ramp::new(music.ramp.current(), 0.0, fade);
                music.fading = Some(Fate::Pause);
                self.pending = Some(message);
            }
            (None, _) => self.pending = Some(message),
        }
    }

    fn fade_ms(&self) -> u64 {
        self.manifest
            .as_ref()
            .map_or(500, |m| m.program.playback.fade_ms as u64)
    }

    /// At closing time everything but an urgent message fades out and ends.
    fn fade_out_for_closing(&mut self) {
        let fade = frames_in(Duration::from_millis(self.fade_ms()));
        for deck in [&mut self.music, &mut self.message].into_iter().flatten() {
            if deck.priority() < Priority::Urgent && deck.fading != Some(Fate::End) {
                deck.ramp = Ramp::new(deck.ramp.current(), 0.0, fade);
                deck.fading = Some(Fate::End);
            }
        }
        if let Some(p) = self.paused.take() {
            self.end_row(&p.deck, Outcome::Interrupted);
        }
    }

    /// Renders one block; false when nothing sounds (closed, or nothing to play).
    fn fill(&mut self, block: &mut [f32], schedule: &ShopSchedule<'_>) -> bool {
        let mut filled = 0;
        let mut sounding = false;
        // A few rounds: each boundary inside the block starts the next deck at once.
        for _ in 0..4 {
            if filled == block.len() {
                break;
            }
            self.block_offset = (filled / CHANNELS) as u64;
            let at = self.now();
            if self.message.is_none() && self.music.is_none() {
                self.boundary(at, schedule);
            }
            if self.message.is_none() && self.music.is_none() {
                break;
            }
            sounding = true;
            let mut len = block.len() - filled;
            for deck in [&self.music, &self.message].into_iter().flatten() {
                if deck.fading.is_some() && !deck.ramp.is_done() {
                    let left = (deck.ramp.frames - deck.ramp.done) as usize * CHANNELS;
                    len = len.min(left.max(CHANNELS));
                }
            }
            let out = &mut block[filled..filled + len];
            let mut produced = 0;
            let mut ended = [None, None];
            for (slot, deck) in [(0, &mut self.music), (1, &mut self.message)] {
                let Some(d) = deck.as_mut() else { continue };
                let buf = &mut self.scratch[..len];
                buf.fill(0.0);
                let n = d.track.read(buf);
                d.ramp.apply(&mut buf[..n], d.gain);
                for (o, s) in out.iter_mut().zip(buf[..n].iter()) {
                    *o += *s;
                }
                produced = produced.max(n);
                if n < len {
                    ended[slot] = Some(Outcome::Complete);
                } else if d.fading.is_some() && d.ramp.is_done() {
                    ended[slot] = Some(Outcome::Interrupted);
                }
            }
            for (slot, outcome) in ended.into_iter().enumerate() {
                if let Some(outcome) = outcome {
                    self.deck_ended(slot, outcome);
                }
            }
            // When the only deck ended early, the next one starts right there.
            filled += if produced < len && self.message.is_none() && self.music.is_none() {
                produced
            } else {
                len
            };
        }
        self.block_offset = 0;
        for s in block.iter_mut() {
            *s = s.clamp(-1.0, 1.0);
        }
        sounding
    }

    /// A deck reached its end (`Complete`) or the end of its fade-out.
    fn deck_ended(&mut self, slot: usize, outcome: Outcome) {
        let deck = if slot == 0 {
            self.music.take()
        } else {
            self.message.take()
        };
        let Some(deck) = deck else { return };
        if deck.track.ended_early() {
            self.check_damage(&deck.media);
        }
        match (outcome, deck.fading) {
            (Outcome::Interrupted, Some(Fate::Pause)) => {
                self.end_row(&deck, Outcome::Interrupted);
                let after = self.pending.as_ref().map_or(AfterMode::Resume, |m| m.mode.after);
                self.paused = Some(Paused { deck, after });
            }
            (Outcome::Interrupted, _) => self.end_row(&deck, Outcome::Interrupted),
            _ => {
                self.end_row(&deck, Outcome::Complete);
                // The message over, ducked music comes back up.
                if slot == 1 {
                    let fade = frames_in(Duration::from_millis(self.fade_ms()));
                    if let Some(m) = &mut self.music {
                        if m.fading.is_none() {
                            m.ramp = Ramp::new(m.ramp.current(), 1.0, fade);
                        }
                    }
                }
            }
        }
    }

    fn end_row(&mut self, deck: &Deck, outcome: Outcome) {
        let at = self.now();
        if let Err(e) = self.log.finish(&deck.row, at, deck.position_ms(), outcome) {
            self.problem(e.to_string());
        }
    }

    fn save_progress(&mut self) {
        self.last_progress = self.frames;
        let at = self.now();
        for deck in [&self.music, &self.message].into_iter().flatten() {
            if let Err(e) = self.log.progress(&deck.row, at, deck.position_ms()) {
                tracing::warn!(error = %e, "cannot save play progress");
            }
        }
    }

    /// Nothing plays: choose what starts at `at`.
    fn boundary(&mut self, at: DateTime<Utc>, schedule: &ShopSchedule<'_>) {
        // Files that do not decode are skipped; a bounded number of tries keeps a
        // broken library from spinning.
        for _ in 0..8 {
            if let Some(message) = self.pending.take() {
                if self.start_message(message) {
                    return;
                }
                continue;
            }
            if let Some(message) = schedule.due_messages(at, &self.history).into_iter().next() {
                if self.start_message(message) {
                    return;
                }
                continue;
            }
            if schedule.open_period(at).is_none() {
                if let Some(p) = self.paused.take() {
                    self.end_row(&p.deck, Outcome::Interrupted);
                }
                self.resume_point = None;
                return;
            }
            if let Some(point) = self.resume_point.take() {
                if self.go_on_with(point, at, schedule) {
                    return;
                }
            }
            if let Some(paused) = self.paused.take() {
                match paused.after {
                    AfterMode::Resume => return self.resume(paused.deck),
                    AfterMode::Restart => {
                        if let Role::Music { pick } = paused.deck.role {
                            if self.start_music(pick, false) {
                                return;
                            }
                        }
                    }
                    AfterMode::Next => {}
                }
                continue;
            }
            match schedule.next_at_boundary(at, &self.history) {
                Next::Closed { .. } => return,
                Next::Message(message) => {
                    if self.start_message(message) {
                        return;
                    }
                }
                Next::Music(pick) => {
                    if self.start_music(pick, true) {
                        return;
                    }
                }
            }
        }
    }

    /// Loudness gain, title, artist and duration of `media` from the manifest.
    fn entry_gain(&self, media: &MediaId) -> (f32, String, Option<String>, Duration) {
        let manifest = self.manifest.as_ref();
        let entry = manifest.and_then(|m| m.media_entry(media));
        let kind = entry.map_or(MediaKind::Music, |e| e.kind);
        let target = manifest.map_or(-16.0, |m| m.program.playback.target_lufs.for_kind(kind));
        let gain = db_to_gain(gain_db(entry.and_then(|e| e.loudness_lufs), target));
        (
            gain,
            entry.map_or_else(|| media.short(), |e| e.title.clone()),
            entry.and_then(|e| e.artist.clone()),
            Duration::from_millis(entry.map_or(0, |e| e.duration_ms)),
        )
    }

    /// Opens `media` and writes its play log row; `None` (after logging a skipped
    /// row) when the file does not open.
    fn open_deck(
        &mut self,
        media: MediaId,
        role: Role,
        kind: &'static str,
        source: String,
        resumed: Option<Deck>,
    ) -> Option<Deck> {
        let at = self.now();
        let version = self.manifest.as_ref().map_or(0, |m| m.version());
        let (gain, title, artist, duration) = self.entry_gain(&media);
        let (track, position_ms, resumed_from) = match resumed {
            Some(d) => {
                let pos = d.position_ms();
                (Ok(d.track), pos, Some(d.row))
            }
            None => (self.open_track(&media), 0, None),
        };
        let start = PlayStart {
            media,
            title: &title,
            kind,
            source: &source,
            version,
            started_at: at,
            position_ms,
            output_ms: frames_duration(self.frames + self.block_offset).as_millis() as u64,
            resumed_from: resumed_from.as_deref(),
        };
        // A log that cannot be written (a full disk) must not silence the shop:
        // the play goes on unlogged and the problem is reported.
        let row = match self.log.start(&start, &self.options.shop, &self.history) {
            Ok(id) => id,
            Err(e) => {
                self.problem(format!("play not logged: {e}"));
                String::new()
            }
        };
        let track = match track {
            Ok(t) => t,
            Err(e) => {
                if let Err(e) = self.log.finish(&row, at, 0, Outcome::Skipped) {
                    self.problem(e.to_string());
                }
                self.problem(format!("skipped {title}: {e}"));
                self.check_damage(&media);
                return None;
            }
        };
        if let Some(old) = &resumed_from {
            if let Err(e) = self.log.mark_resumed(old, at) {
                self.problem(e.to_string());
            }
        }
        let local = self
            .manifest
            .as_ref()
            .and_then(|m| m.timezone.parse::<chrono_tz::Tz>().ok())
            .map_or_else(
                || at.format("%H:%M:%S").to_string(),
                |tz| at.with_timezone(&tz).format("%a %H:%M:%S").to_string(),
            );
        tracing::debug!(media = %media, kind, source = %source, position_ms, "play");
        let title_for_report = title.clone();
        self.emit(PlayEvent::Started {
            at,
            local,
            kind,
            title,
            artist,
            source,
            position: Duration::from_millis(position_ms),
            duration,
        });
        Some(Deck {
            track,
            role,
            row,
            media,
            now_playing: NowPlaying {
                media: media.to_string(),
                title: title_for_report,
                kind: kind.to_string(),
                started_at: rfc3339(at),
            },
            gain,
            ramp: Ramp::steady(1.0),
            fading: None,
        })
    }

    /// Starts a music track; false when it could not be opened (logged `skipped`).
    fn start_music(&mut self, pick: MusicPick, new_pick: bool) -> bool {
        if new_pick {
            self.history.record_music(&pick);
        }
        let source = pick.playlist.clone();
        self.music = self.open_deck(pick.media, Role::Music { pick }, "music", source, None);
        self.music.is_some()
    }

    /// Takes up music that stopped without ending at the position the schedule has
    /// reached since, if its playlist still plays now and that is not past its end.
    /// False (nothing started) otherwise: then the next pick plays.
    fn go_on_with(&mut self, point: ResumePoint, at: DateTime<Utc>, schedule: &ShopSchedule<'_>) -> bool {
        let Some(choice) = schedule.music_at(at) else {
            return false;
        };
        let still_listed = schedule
            .playlist_at(at)
            .is_some_and(|(name, items)| name == point.playlist && items.contains(&point.media));
        if choice.playlist != point.playlist || !still_listed {
            return false;
        }
        let position = point.position + (at - point.at).to_std().unwrap_or_default();
        let (gain, title, _, duration) = self.entry_gain(&point.media);
        if position + RESUME_MARGIN >= duration {
            return false;
        }
        let mut track = match self.open_track(&point.media) {
            Ok(t) => t,
            Err(e) => {
                self.problem(format!("cannot go on with {title}: {e}"));
                return false;
            }
        };
        track.skip_to(position);
        tracing::info!(media = %point.media, position_ms = position.as_millis() as u64, "going on with the music cut short");
        let pick = MusicPick {
            media: point.media,
            playlist: point.playlist.clone(),
            rule: choice.rule,
        };
        let cut_short = Deck {
            track,
            role: Role::Music { pick },
            row: point.row,
            media: point.media,
            now_playing: NowPlaying {
                media: point.media.to_string(),
                title,
                kind: "music".into(),
                started_at: rfc3339(at),
            },
            gain,
            ramp: Ramp::steady(1.0),
            fading: None,
        };
        self.resume(cut_short);
        self.music.is_some()
    }

    /// Continues paused music from where it stopped, fading in.
    fn resume(&mut self, deck: Deck) {
        let fade = frames_in(Duration::from_millis(self.fade_ms()));
        let source = match &deck.role {
            Role::Music { pick } => pick.playlist.clone(),
            Role::Message { message } => message.key.clone(),
        };
        let (media, role) = (deck.media, deck.role.clone());
        self.music = self.open_deck(media, role, "music", source, Some(deck));
        if let Some(music) = &mut self.music {
            music.ramp = Ramp::new(0.0, 1.0, fade);
        }
    }

    /// Starts `message` (recording it as played first, so it never plays twice).
    fn start_message(&mut self, message: Message) -> bool {
        self.history.record_message(&message);
        let kind = kind_label(&message);
        let source = message.key.clone();
        let media = message.media;
        self.message = self.open_deck(media, Role::Message { message }, kind, source, None);
        self.message.is_some()
    }

    /// Ends every deck, playing or paused, `interrupted`, and says nothing plays.
    fn end_all(&mut self) {
        for deck in [self.music.take(), self.message.take()].into_iter().flatten() {
            self.end_row(&deck, Outcome::Interrupted);
        }
        if let Some(p) = self.paused.take() {
            self.end_row(&p.deck, Outcome::Interrupted);
        }
        self.pending = None;
        self.publish_now_playing();
    }

    fn shut_down(&mut self) -> Result<(), PlayerError> {
        self.end_all();
        self.output.finish()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_keys_read_as_words_in_run_lines() {
        let id = "92b2c1ec5fc0acaad64bc63c3b547822839e23b1498b68b3900ee35da216bcb5";
        let cases = [
            (format!("ad-at:{id}:2026-12-05T10:30"), "at 10:30"),
            (format!("ad-every:{id}:3"), "every 3 tracks"),
            ("closing:2026-12-05".to_string(), "closing"),
            ("interrupt:flash-1".to_string(), "flash-1"),
            ("christmas".to_string(), "christmas"),
        ];
        for (key, want) in cases {
            assert_eq!(readable_source(&key), want, "{key}");
        }
    }
}
