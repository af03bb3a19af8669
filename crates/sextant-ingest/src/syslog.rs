//! Syslog: RFC 5424 and RFC 3164 (BSD) lines parsed into their parts, and the two TCP framings
//! of RFC 6587 (octet counting and newline). Pure: no I/O and no clock, the caller passes the
//! time a line was received.
//!
//! Parsing never fails: a line that is neither format comes back as [`Format::Raw`] with the
//! text as its message, and the parts of a message are never more than a few times its size.
//!
//! ```
//! use sextant_ingest::syslog::{self, Format};
//!
//! let line = b"<34>1 2003-10-11T22:14:15.003Z mymachine su - ID47 - 'su root' failed";
//! let message = syslog::parse(line, 0);
//! assert_eq!(message.format, Format::Rfc5424);
//! assert_eq!(syslog::facility_name(message.facility.unwrap()), "auth");
//! assert_eq!(syslog::severity_name(message.severity.unwrap()), "crit");
//! assert_eq!(message.app_name.as_deref(), Some("su"));
//! assert_eq!(message.message, "'su root' failed");
//!
//! let mut decoder = syslog::FrameDecoder::new(64 * 1024);
//! let mut frames = Vec::new();
//! decoder.push(b"17 <13>1 - - -", &mut frames);
//! decoder.push(b" - - -<13>first line\r\n<13>sec", &mut frames);
//! decoder.finish(&mut frames);
//! assert_eq!(frames, [&b"<13>1 - - - - - -"[..], b"<13>first line", b"<13>sec"]);
//! ```

use sextant_model::time::{self, NANOS_PER_SECOND};

/// The longest hostname, app name, process id or message id; a longer one makes the line
/// [`Format::Raw`].
const MAX_HEADER_FIELD: usize = 255;
/// The longest SD-ID or PARAM-NAME (RFC 5424's SD-NAME).
const MAX_SD_NAME: usize = 32;
/// How far into an RFC 3164 message, after the hostname, the colon ending its tag may be.
const MAX_TAG: usize = 48;
/// The most digits an octet count may have (a frame under 1 GB); more is not a count.
const MAX_COUNT_DIGITS: usize = 9;
const DAY_NANOS: i64 = 86_400 * NANOS_PER_SECOND;
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";
const MONTHS: [&[u8]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];
const SEVERITY_NAMES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];
const FACILITY_NAMES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];

/// Which format a line was read as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [MSG]`.
    Rfc5424,
    /// `<PRI>Mmm dd hh:mm:ss HOSTNAME TAG: MSG`, or with an RFC 3339 timestamp instead.
    Rfc3164,
    /// Neither: the message is the whole line, or everything after a valid PRI.
    Raw,
}

/// One syslog line, split into its parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyslogMessage {
    /// 0 to 23 (see [`facility_name`]); `None` without a valid PRI.
    pub facility: Option<u8>,
    /// 0 (emerg) to 7 (debug) (see [`severity_name`], [`otlp_severity`]); `None` without a
    /// valid PRI.
    pub severity: Option<u8>,
    /// Nanoseconds since the Unix epoch; `None` when absent (`-`) or unparseable.
    pub time_unix_nano: Option<i64>,
    pub hostname: Option<String>,
    pub app_name: Option<String>,
    pub proc_id: Option<String>,
    /// RFC 5424 only.
    pub msg_id: Option<String>,
    /// RFC 5424 SD-PARAMs in order, flattened to `("SD-ID.PARAM-NAME", value)`, such as
    /// `("timeQuality.tzKnown", "1")`; an SD-ELEMENT without parameters adds nothing.
    pub structured_data: Vec<(String, String)>,
    /// The free text, invalid UTF-8 replaced by U+FFFD.
    pub message: String,
    pub format: Format,
}

impl SyslogMessage {
    /// A message of `format` with nothing set.
    fn empty(format: Format) -> SyslogMessage {
        SyslogMessage {
            facility: None,
            severity: None,
            time_unix_nano: None,
            hostname: None,
            app_name: None,
            proc_id: None,
            msg_id: None,
            structured_data: Vec::new(),
            message: String::new(),
            format,
        }
    }

    /// A message of `format` with the facility and severity of `pri`, if any.
    fn with_pri(format: Format, pri: Option<u8>) -> SyslogMessage {
        SyslogMessage {
            facility: pri.map(|pri| pri / 8),
            severity: pri.map(|pri| pri % 8),
            ..SyslogMessage::empty(format)
        }
    }
}

/// Parses one syslog line (without its framing). A line with a valid `<PRI>` followed by `1 `
/// is RFC 5424, with another valid `<PRI>` it is RFC 3164; a line without one, or whose RFC
/// 5424 header or RFC 3164 hostname is malformed, is [`Format::Raw`]. Trailing CR, LF and NUL
/// bytes are dropped first.
///
/// RFC 3164 timestamps have no year and no zone: they are read as UTC, in the latest of the
/// year of `received_unix_nano`, the year before and the year after that puts them no more
/// than 24 hours after `received_unix_nano` (a `Dec 31` line received on January 1st is from
/// the year before, a `Jan  1` line received a second before midnight on December 31st from
/// the year after).
pub fn parse(line: &[u8], received_unix_nano: i64) -> SyslogMessage {
    let line = trim_line_end(line);
    let Some((pri, rest)) = parse_pri(line) else {
        return SyslogMessage {
            message: text(line),
            ..SyslogMessage::empty(Format::Raw)
        };
    };
    let parsed = if rest.starts_with(b"1 ") {
        parse_rfc5424(pri, rest)
    } else {
        parse_rfc3164(pri, rest, received_unix_nano)
    };
    parsed.unwrap_or_else(|| SyslogMessage {
        message: text(rest),
        ..SyslogMessage::with_pri(Format::Raw, Some(pri))
    })
}

/// The OTLP severity number (1 to 24) of a syslog severity: emerg, alert and crit are FATAL
/// (21), err ERROR (17), warning WARN (13), notice INFO2 (10), info INFO (9), debug DEBUG (5).
/// A severity above 7, which [`parse`] never gives, is 0 (OTLP's unspecified).
pub fn otlp_severity(severity: u8) -> i32 {
    match severity {
        0..=2 => 21,
        3 => 17,
        4 => 13,
        5 => 10,
        6 => 9,
        7 => 5,
        _ => 0,
    }
}

/// The keyword of a syslog severity (`emerg` to `debug`, as syslog.conf spells them);
/// `unknown` above 7.
pub fn severity_name(severity: u8) -> &'static str {
    SEVERITY_NAMES
        .get(usize::from(severity))
        .copied()
        .unwrap_or("unknown")
}

/// The keyword of a syslog facility (`kern` to `local7`); `unknown` above 23.
pub fn facility_name(facility: u8) -> &'static str {
    FACILITY_NAMES
        .get(usize::from(facility))
        .copied()
        .unwrap_or("unknown")
}

/// `line` without trailing CR, LF and NUL bytes.
fn trim_line_end(line: &[u8]) -> &[u8] {
    let end = line
        .iter()
        .rposition(|b| !matches!(b, b'\r' | b'\n' | b'\0'))
        .map_or(0, |last| last + 1);
    &line[..end]
}

/// `<PRI>` at the start of `line`, 1 to 3 digits worth at most 191: its value and the bytes
/// after it.
fn parse_pri(line: &[u8]) -> Option<(u8, &[u8])> {
    let rest = line.strip_prefix(b"<")?;
    let close = rest.iter().take(4).position(|&b| b == b'>')?;
    let pri = number(&rest[..close], 3)?;
    let pri = u8::try_from(pri).ok().filter(|&pri| pri <= 191)?;
    Some((pri, &rest[close + 1..]))
}

/// `<PRI>` already read, `rest` starting with `1 `; `None` if the header is malformed.
fn parse_rfc5424(pri: u8, rest: &[u8]) -> Option<SyslogMessage> {
    let mut cursor = Cursor(rest.strip_prefix(b"1 ")?);
    let time_unix_nano = match cursor.token() {
        b"" => return None,
        b"-" => None,
        timestamp => std::str::from_utf8(timestamp)
            .ok()
            .and_then(time::parse_rfc3339),
    };
    cursor.expect(b' ')?;
    let hostname = header_field(&mut cursor)?;
    let app_name = header_field(&mut cursor)?;
    let proc_id = header_field(&mut cursor)?;
    let msg_id = header_field(&mut cursor)?;
    let structured_data = structured_data(&mut cursor)?;
    if !cursor.0.is_empty() {
        cursor.expect(b' ')?;
    }
    let message = cursor.0.strip_prefix(UTF8_BOM).unwrap_or(cursor.0);
    // Leading spaces are dropped: rsyslog relays a BSD message with the space after its tag.
    let start = message
        .iter()
        .position(|b| *b != b' ')
        .unwrap_or(message.len());
    let message = &message[start..];
    Some(SyslogMessage {
        time_unix_nano,
        hostname,
        app_name,
        proc_id,
        msg_id,
        structured_data,
        message: text(message),
        ..SyslogMessage::with_pri(Format::Rfc5424, Some(pri))
    })
}

/// An RFC 5424 header field and the space after it: `Some(None)` for `-`, `None` if it is
/// malformed (see [`header_value`]) or no space follows.
fn header_field(cursor: &mut Cursor<'_>) -> Option<Option<String>> {
    let token = cursor.token();
    cursor.expect(b' ')?;
    header_value(token)
}

/// A header token: `Some(None)` for `-`, `None` unless it is 1 to 255 bytes of printable
/// ASCII.
fn header_value(token: &[u8]) -> Option<Option<String>> {
    match token {
        b"-" => Some(None),
        _ if is_printable_token(token, MAX_HEADER_FIELD) => Some(Some(text(token))),
        _ => None,
    }
}

/// Whether `token` is 1 to `max` bytes of printable ASCII (no space).
fn is_printable_token(token: &[u8], max: usize) -> bool {
    (1..=max).contains(&token.len()) && token.iter().all(|b| b.is_ascii_graphic())
}

/// RFC 5424 STRUCTURED-DATA: `-`, or SD-ELEMENTs `[SD-ID PARAM-NAME="VALUE" ...]` one after
/// another, their parameters flattened to `("SD-ID.PARAM-NAME", value)`. `None` if malformed.
fn structured_data(cursor: &mut Cursor<'_>) -> Option<Vec<(String, String)>> {
    let mut params = Vec::new();
    if cursor.eat(b'-') {
        return Some(params);
    }
    cursor.expect(b'[')?;
    loop {
        let id = sd_name(cursor)?;
        while !cursor.eat(b']') {
            cursor.expect(b' ')?;
            let name = sd_name(cursor)?;
            cursor.expect(b'=')?;
            cursor.expect(b'"')?;
            let value = sd_value(cursor)?;
            params.push((format!("{id}.{name}"), value));
        }
        if !cursor.eat(b'[') {
            return Some(params);
        }
    }
}

/// An SD-NAME: 1 to 32 printable ASCII bytes other than `=`, `]` and `"`.
fn sd_name<'a>(cursor: &mut Cursor<'a>) -> Option<&'a str> {
    let is_name_byte = |b: u8| b.is_ascii_graphic() && !matches!(b, b'=' | b']' | b'"');
    let len = cursor
        .0
        .iter()
        .take(MAX_SD_NAME + 1)
        .take_while(|&&b| is_name_byte(b))
        .count();
    if !(1..=MAX_SD_NAME).contains(&len) {
        return None;
    }
    let (name, rest) = cursor.0.split_at(len);
    cursor.0 = rest;
    std::str::from_utf8(name).ok()
}

/// A PARAM-VALUE after its opening quote, through its closing quote. `\"`, `\\` and `\]` stand
/// for the character escaped; any other backslash stands for itself (RFC 5424 §6.3.3).
fn sd_value(cursor: &mut Cursor<'_>) -> Option<String> {
    let bytes = cursor.0;
    let mut value = Vec::new();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' => {
                cursor.0 = &bytes[i + 1..];
                return Some(text(&value));
            }
            b'\\' if matches!(bytes.get(i + 1), Some(b'"' | b'\\' | b']')) => {
                value.push(bytes[i + 1]);
                i += 2;
            }
            _ => {
                value.push(b);
                i += 1;
            }
        }
    }
    None
}

/// `<PRI>` already read, `rest` not starting with `1 `: a timestamp, a hostname, a tag and the
/// message. Without a timestamp, all of `rest` is the message. `None` (so [`Format::Raw`]) only
/// for a hostname that is not printable ASCII or is longer than 255 bytes.
fn parse_rfc3164(pri: u8, rest: &[u8], received_unix_nano: i64) -> Option<SyslogMessage> {
    let mut message = SyslogMessage::with_pri(Format::Rfc3164, Some(pri));
    let Some((time_unix_nano, after_time)) =
        bsd_timestamp(rest, received_unix_nano).or_else(|| rfc3339_timestamp(rest))
    else {
        message.message = text(rest);
        return Some(message);
    };
    message.time_unix_nano = Some(time_unix_nano);
    let mut cursor = Cursor(after_time);
    if !cursor.eat(b' ') {
        // The timestamp is all there is.
        return Some(message);
    }
    let hostname = cursor.token();
    // An empty hostname (two spaces) is read as an absent one.
    if !hostname.is_empty() {
        message.hostname = header_value(hostname)?;
    }
    cursor.eat(b' ');
    let body = match tag(cursor.0) {
        Some((app_name, proc_id, body)) => {
            message.app_name = Some(app_name);
            message.proc_id = proc_id;
            body
        }
        None => cursor.0,
    };
    message.message = text(body);
    Some(message)
}

/// `Mmm dd hh:mm:ss` (the day space-padded or not) at the start of `rest` and followed by a
/// space or the end: its time in the year [`parse`] describes, and the bytes after it.
fn bsd_timestamp(rest: &[u8], received_unix_nano: i64) -> Option<(i64, &[u8])> {
    let name = rest.get(..3)?;
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(name))? as i64 + 1;
    let mut cursor = Cursor(&rest[3..]);
    cursor.expect(b' ')?;
    cursor.eat(b' ');
    let day = number(cursor.token(), 2)?;
    cursor.expect(b' ')?;
    let clock = cursor.token();
    let &[h1, h2, b':', m1, m2, b':', s1, s2] = clock else {
        return None;
    };
    let (hour, minute, second) = (
        number(&[h1, h2], 2)?,
        number(&[m1, m2], 2)?,
        number(&[s1, s2], 2)?,
    );
    if day < 1 || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let seconds_of_day = hour * 3_600 + minute * 60 + second;
    let (received_year, _, _) = time::civil_from_days(received_unix_nano.div_euclid(DAY_NANOS));
    let latest = received_unix_nano.saturating_add(DAY_NANOS);
    let time_unix_nano = [received_year + 1, received_year, received_year - 1]
        .into_iter()
        .find_map(|year| {
            if day > time::days_in_month(year, month) {
                return None;
            }
            let seconds = time::days_from_civil(year, month, day) * 86_400 + seconds_of_day;
            seconds
                .checked_mul(NANOS_PER_SECOND)
                .filter(|&at| at <= latest)
        })?;
    Some((time_unix_nano, cursor.0))
}

/// An RFC 3339 timestamp ending at the first space of `rest` (rsyslog's forwarding format):
/// its time and the bytes after it.
fn rfc3339_timestamp(rest: &[u8]) -> Option<(i64, &[u8])> {
    let (timestamp, after) = Cursor(rest).split_token();
    let time_unix_nano = time::parse_rfc3339(std::str::from_utf8(timestamp).ok()?)?;
    Some((time_unix_nano, after))
}

/// An RFC 3164 TAG, `app[pid]:` or `app:`, with its colon in the first 48 bytes of `rest`: the
/// app name, the process id and the message after the colon (and one space). `None` if `rest`
/// does not start with one.
fn tag(rest: &[u8]) -> Option<(String, Option<String>, &[u8])> {
    let colon = rest.iter().take(MAX_TAG).position(|&b| b == b':')?;
    let tag = &rest[..colon];
    if !is_printable_token(tag, MAX_HEADER_FIELD) {
        return None;
    }
    let (app_name, proc_id) = match tag.iter().position(|&b| b == b'[') {
        None => (tag, None),
        Some(open) => {
            let proc_id = tag[open + 1..].strip_suffix(b"]")?;
            if proc_id.is_empty() || proc_id.iter().any(|b| matches!(b, b'[' | b']')) {
                return None;
            }
            (&tag[..open], Some(proc_id))
        }
    };
    if app_name.is_empty() || app_name.contains(&b']') {
        return None;
    }
    let body = &rest[colon + 1..];
    Some((
        text(app_name),
        proc_id.map(text),
        body.strip_prefix(b" ").unwrap_or(body),
    ))
}

/// 1 to `max_digits` ASCII digits as a number.
fn number(digits: &[u8], max_digits: usize) -> Option<i64> {
    if !(1..=max_digits).contains(&digits.len()) || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0, |n, digit| n * 10 + i64::from(digit - b'0')),
    )
}

/// `bytes` as text, invalid UTF-8 replaced by U+FFFD.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The unread rest of a header.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    /// The bytes before the next space (or the end), and the rest from that space on.
    fn split_token(&self) -> (&'a [u8], &'a [u8]) {
        let end = self
            .0
            .iter()
            .position(|&b| b == b' ')
            .unwrap_or(self.0.len());
        self.0.split_at(end)
    }

    /// Reads the bytes before the next space (or the end).
    fn token(&mut self) -> &'a [u8] {
        let (token, rest) = self.split_token();
        self.0 = rest;
        token
    }

    /// Reads `byte` if it comes next.
    fn eat(&mut self, byte: u8) -> bool {
        match self.0.split_first() {
            Some((&next, rest)) if next == byte => {
                self.0 = rest;
                true
            }
            _ => false,
        }
    }

    /// Reads `byte`, `None` if something else comes next.
    fn expect(&mut self, byte: u8) -> Option<()> {
        self.eat(byte).then_some(())
    }
}

/// Splits a TCP byte stream into syslog frames (RFC 6587), deciding the framing frame by frame:
/// octet counting (`LEN SP MSG`, §3.4.1) when a frame starts with a digit 1 to 9 and its digits
/// end in a space, otherwise newline framing (up to an LF, a CR before it dropped; §3.4.2).
/// Empty lines are skipped.
///
/// A frame longer than `max_frame` bytes is cut to its first `max_frame` bytes, the rest
/// discarded, and counted by [`FrameDecoder::oversized`]; the decoder holds at most one
/// partial frame of at most `max_frame + 1` bytes.
#[derive(Debug)]
pub struct FrameDecoder {
    max_frame: usize,
    /// The frame being read; in [`FrameState::Count`], the digits of its count so far.
    frame: Vec<u8>,
    state: FrameState,
    oversized: u64,
}

#[derive(Clone, Copy, Debug)]
enum FrameState {
    /// Between frames.
    Start,
    /// Reading an octet count, worth this much so far.
    Count(usize),
    /// Reading `remaining` bytes of an octet-counted frame, then discarding `excess` bytes.
    Counted { remaining: usize, excess: usize },
    /// Reading a newline-framed frame.
    Line,
    /// Discarding the rest of an oversized line, through its LF.
    SkipLine,
    /// Discarding this many more bytes of an oversized octet-counted frame.
    SkipCounted(usize),
}

impl FrameDecoder {
    /// A decoder cutting frames at `max_frame` bytes.
    pub fn new(max_frame: usize) -> FrameDecoder {
        FrameDecoder {
            max_frame,
            frame: Vec::new(),
            state: FrameState::Start,
            oversized: 0,
        }
    }

    /// Reads the next `bytes` of the stream, appending each frame they complete to `out`; a
    /// partial frame at the end is kept for the next call.
    pub fn push(&mut self, mut bytes: &[u8], out: &mut Vec<Vec<u8>>) {
        while let Some(&first) = bytes.first() {
            match self.state {
                FrameState::Start => {
                    self.state = if matches!(first, b'1'..=b'9') {
                        FrameState::Count(0)
                    } else {
                        FrameState::Line
                    };
                }
                FrameState::Count(len) => match first {
                    b'0'..=b'9' if self.frame.len() < MAX_COUNT_DIGITS => {
                        self.frame.push(first);
                        self.state = FrameState::Count(len * 10 + usize::from(first - b'0'));
                        bytes = &bytes[1..];
                    }
                    b' ' => {
                        bytes = &bytes[1..];
                        self.frame.clear();
                        let kept = len.min(self.max_frame);
                        if kept < len {
                            self.oversized += 1;
                        }
                        self.state = FrameState::Counted {
                            remaining: kept,
                            excess: len - kept,
                        };
                    }
                    // Not a count after all: the digits begin a line.
                    _ => self.state = FrameState::Line,
                },
                FrameState::Counted { remaining, excess } => {
                    let take = remaining.min(bytes.len());
                    self.frame.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    self.state = if take < remaining {
                        FrameState::Counted {
                            remaining: remaining - take,
                            excess,
                        }
                    } else {
                        self.emit(out);
                        if excess > 0 {
                            FrameState::SkipCounted(excess)
                        } else {
                            FrameState::Start
                        }
                    };
                }
                FrameState::Line => {
                    let newline = bytes.iter().position(|&b| b == b'\n');
                    let end = newline.unwrap_or(bytes.len());
                    // One byte more than a frame may hold, for the CR before the LF.
                    let room = self
                        .max_frame
                        .saturating_add(1)
                        .saturating_sub(self.frame.len());
                    if end > room {
                        self.oversized += 1;
                        self.frame.extend_from_slice(&bytes[..room]);
                        self.frame.truncate(self.max_frame);
                        self.emit(out);
                        match newline {
                            Some(lf) => {
                                bytes = &bytes[lf + 1..];
                                self.state = FrameState::Start;
                            }
                            None => {
                                bytes = &[];
                                self.state = FrameState::SkipLine;
                            }
                        }
                    } else {
                        self.frame.extend_from_slice(&bytes[..end]);
                        match newline {
                            Some(lf) => {
                                bytes = &bytes[lf + 1..];
                                self.emit_line(out);
                                self.state = FrameState::Start;
                            }
                            None => bytes = &[],
                        }
                    }
                }
                FrameState::SkipLine => match bytes.iter().position(|&b| b == b'\n') {
                    Some(lf) => {
                        bytes = &bytes[lf + 1..];
                        self.state = FrameState::Start;
                    }
                    None => bytes = &[],
                },
                FrameState::SkipCounted(excess) => {
                    let skip = excess.min(bytes.len());
                    bytes = &bytes[skip..];
                    self.state = if skip < excess {
                        FrameState::SkipCounted(excess - skip)
                    } else {
                        FrameState::Start
                    };
                }
            }
        }
    }

    /// Ends the stream: appends the frame in progress, an unterminated last line or an
    /// octet-counted frame the end of the stream cut short, to `out` as it is.
    pub fn finish(&mut self, out: &mut Vec<Vec<u8>>) {
        match self.state {
            FrameState::Line | FrameState::Count(_) => self.emit_line(out),
            FrameState::Counted { .. } => self.emit(out),
            FrameState::Start | FrameState::SkipLine | FrameState::SkipCounted(_) => {}
        }
        self.frame.clear();
        self.state = FrameState::Start;
    }

    /// How many frames were longer than `max_frame` and cut.
    pub fn oversized(&self) -> u64 {
        self.oversized
    }

    /// Appends the line read so far, without a trailing CR and cut to `max_frame`.
    fn emit_line(&mut self, out: &mut Vec<Vec<u8>>) {
        if self.frame.last() == Some(&b'\r') {
            self.frame.pop();
        }
        if self.frame.len() > self.max_frame {
            self.oversized += 1;
            self.frame.truncate(self.max_frame);
        }
        self.emit(out);
    }

    /// Appends the frame read so far, unless it is empty.
    fn emit(&mut self, out: &mut Vec<Vec<u8>>) {
        if !self.frame.is_empty() {
            out.push(std::mem::take(&mut self.frame));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2003-10-11T22:14:15.003Z, the time of RFC 5424's examples.
    const RFC5424_EXAMPLE_TIME: i64 = 1_065_910_455_003_000_000;
    /// 2003-10-12T00:00:00Z, a receive time for RFC 3164's example.
    const OCT_12_2003: i64 = 1_065_916_800_000_000_000;
    /// 2026-12-01T10:00:00Z.
    const DEC_1_2026: i64 = 1_796_119_200_000_000_000;

    fn check(line: &[u8], received_unix_nano: i64, expected: SyslogMessage) {
        assert_eq!(
            parse(line, received_unix_nano),
            expected,
            "{}",
            String::from_utf8_lossy(line)
        );
    }

    fn some(text: &str) -> Option<String> {
        Some(text.to_owned())
    }

    fn sd(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    /// RFC 5424 §6.5's examples, their BOMs as bytes.
    const RFC5424_EXAMPLES: [&[u8]; 4] = [
        b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xEF\xBB\xBF'su root' failed for lonvick on /dev/pts/8",
        b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.",
        b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"] \xEF\xBB\xBFAn application event log entry...",
        b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"][examplePriority@32473 class=\"high\"]",
    ];

    #[test]
    fn rfc5424_examples_from_the_rfc() {
        check(
            RFC5424_EXAMPLES[0],
            0,
            SyslogMessage {
                facility: Some(4),
                severity: Some(2),
                time_unix_nano: Some(RFC5424_EXAMPLE_TIME),
                hostname: some("mymachine.example.com"),
                app_name: some("su"),
                msg_id: some("ID47"),
                message: "'su root' failed for lonvick on /dev/pts/8".into(),
                ..SyslogMessage::empty(Format::Rfc5424)
            },
        );
        check(
            RFC5424_EXAMPLES[1],
            0,
            SyslogMessage {
                facility: Some(20),
                severity: Some(5),
                // 2003-08-24T12:14:15.000003Z.
                time_unix_nano: Some(1_061_727_255_000_003_000),
                hostname: some("192.0.2.1"),
                app_name: some("myproc"),
                proc_id: some("8710"),
                message: "%% It's time to make the do-nuts.".into(),
                ..SyslogMessage::empty(Format::Rfc5424)
            },
        );
        let example_sd = [
            ("exampleSDID@32473.iut", "3"),
            ("exampleSDID@32473.eventSource", "Application"),
            ("exampleSDID@32473.eventID", "1011"),
        ];
        let evntslog = SyslogMessage {
            facility: Some(20),
            severity: Some(5),
            time_unix_nano: Some(RFC5424_EXAMPLE_TIME),
            hostname: some("mymachine.example.com"),
            app_name: some("evntslog"),
            msg_id: some("ID47"),
            ..SyslogMessage::empty(Format::Rfc5424)
        };
        check(
            RFC5424_EXAMPLES[2],
            0,
            SyslogMessage {
                structured_data: sd(&example_sd),
                message: "An application event log entry...".into(),
                ..evntslog.clone()
            },
        );
        let mut two_elements = example_sd.to_vec();
        two_elements.push(("examplePriority@32473.class", "high"));
        check(
            RFC5424_EXAMPLES[3],
            0,
            SyslogMessage {
                structured_data: sd(&two_elements),
                ..evntslog
            },
        );
    }

    #[test]
    fn rfc5424_offsets_escapes_and_absent_fields() {
        check(
            br#"<14>1 2026-03-01T10:00:00.5+01:00 host app 1 - [meta path="C:\\dir" quote="say \"hi\"" bracket="a\]b" other="\n" empty=""][origin] msg with "quotes""#,
            0,
            SyslogMessage {
                facility: Some(1),
                severity: Some(6),
                // 2026-03-01T09:00:00.5Z.
                time_unix_nano: Some(1_772_355_600_500_000_000),
                hostname: some("host"),
                app_name: some("app"),
                proc_id: some("1"),
                structured_data: sd(&[
                    ("meta.path", r"C:\dir"),
                    ("meta.quote", r#"say "hi""#),
                    ("meta.bracket", "a]b"),
                    ("meta.other", r"\n"),
                    ("meta.empty", ""),
                ]),
                message: r#"msg with "quotes""#.into(),
                ..SyslogMessage::empty(Format::Rfc5424)
            },
        );
        check(
            b"<0>1 - - - - - -\r\n",
            0,
            SyslogMessage {
                facility: Some(0),
                severity: Some(0),
                ..SyslogMessage::empty(Format::Rfc5424)
            },
        );
        // An unparseable timestamp is an absent one; the rest of the header still counts.
        check(
            b"<191>1 yesterday host - - - - hi",
            0,
            SyslogMessage {
                facility: Some(23),
                severity: Some(7),
                hostname: some("host"),
                message: "hi".into(),
                ..SyslogMessage::empty(Format::Rfc5424)
            },
        );
    }

    #[test]
    fn rfc3164_example_from_the_rfc() {
        check(
            b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
            OCT_12_2003,
            SyslogMessage {
                facility: Some(4),
                severity: Some(2),
                // 2003-10-11T22:14:15Z.
                time_unix_nano: Some(1_065_910_455_000_000_000),
                hostname: some("mymachine"),
                app_name: some("su"),
                message: "'su root' failed for lonvick on /dev/pts/8".into(),
                ..SyslogMessage::empty(Format::Rfc3164)
            },
        );
    }

    #[test]
    fn rfc3164_padded_day_and_pid() {
        let expected = SyslogMessage {
            facility: Some(1),
            severity: Some(5),
            // 2026-12-01T09:05:01Z.
            time_unix_nano: Some(1_796_115_901_000_000_000),
            hostname: some("host"),
            app_name: some("cron"),
            proc_id: some("123"),
            message: "job done".into(),
            ..SyslogMessage::empty(Format::Rfc3164)
        };
        check(
            b"<13>Dec  1 09:05:01 host cron[123]: job done",
            DEC_1_2026,
            expected.clone(),
        );
        check(
            b"<13>Dec 01 09:05:01 host cron[123]:job done\n",
            DEC_1_2026,
            expected.clone(),
        );
        check(
            b"<13>Dec 1 09:05:01 host cron[123]: job done",
            DEC_1_2026,
            expected,
        );
    }

    #[test]
    fn rfc3164_year_is_the_latest_no_more_than_a_day_ahead() {
        let late = |received, expected| {
            let message = parse(b"<13>Dec 31 23:59:59 host app: late", received);
            assert_eq!(message.time_unix_nano, Some(expected));
        };
        // Received 2027-01-01T00:00:05Z: 2026-12-31T23:59:59Z.
        late(1_798_761_605_000_000_000, 1_798_761_599_000_000_000);
        // Received 2026-12-31T23:59:59Z, a second before midnight: `Jan  1 00:00:10` is
        // 2027-01-01T00:00:10Z, not eleven months ago.
        let early = parse(
            b"<13>Jan  1 00:00:10 host app: early",
            1_798_761_599_000_000_000,
        );
        assert_eq!(early.time_unix_nano, Some(1_798_761_610_000_000_000));
        // Received 2026-06-15T12:00:00Z: 23 hours ahead is this year, 48 hours the year before.
        let received = 1_781_524_800_000_000_000;
        let ahead = |line: &[u8]| parse(line, received).time_unix_nano;
        assert_eq!(
            ahead(b"<13>Jun 16 11:00:00 h a: x"),
            Some(1_781_607_600_000_000_000)
        );
        assert_eq!(
            ahead(b"<13>Jun 17 12:00:00 h a: x"),
            Some(1_750_161_600_000_000_000)
        );
        // Received 2025-03-01: February 29th is from 2024.
        let leap_day = parse(b"<13>Feb 29 12:00:00 h a: x", 1_740_787_200_000_000_000);
        assert_eq!(leap_day.time_unix_nano, Some(1_709_208_000_000_000_000));
    }

    #[test]
    fn rfc5424_relayed_by_rsyslog_loses_the_space_after_the_tag() {
        check(
            b"<132>1 2026-12-01T12:00:00+00:00 vm worker - - -  queue backlog\n",
            DEC_1_2026,
            SyslogMessage {
                facility: Some(16),
                severity: Some(4),
                time_unix_nano: Some(1_796_126_400_000_000_000),
                hostname: some("vm"),
                app_name: some("worker"),
                message: "queue backlog".into(),
                ..SyslogMessage::empty(Format::Rfc5424)
            },
        );
    }

    #[test]
    fn rfc3164_with_rsyslog_forward_format_timestamp() {
        check(
            b"<30>2026-12-01T12:00:00.123456+00:00 host app[12]: msg",
            DEC_1_2026,
            SyslogMessage {
                facility: Some(3),
                severity: Some(6),
                // 2026-12-01T12:00:00.123456Z.
                time_unix_nano: Some(1_796_126_400_123_456_000),
                hostname: some("host"),
                app_name: some("app"),
                proc_id: some("12"),
                message: "msg".into(),
                ..SyslogMessage::empty(Format::Rfc3164)
            },
        );
    }

    #[test]
    fn rfc3164_without_timestamp_or_tag() {
        check(
            b"<13>hello world: no timestamp",
            DEC_1_2026,
            SyslogMessage {
                facility: Some(1),
                severity: Some(5),
                message: "hello world: no timestamp".into(),
                ..SyslogMessage::empty(Format::Rfc3164)
            },
        );
        let untagged = SyslogMessage {
            facility: Some(1),
            severity: Some(5),
            time_unix_nano: Some(1_796_115_901_000_000_000),
            hostname: some("host"),
            ..SyslogMessage::empty(Format::Rfc3164)
        };
        for body in [
            "just a message without a tag",
            "a colon too far along, beyond the forty-eighth byte: here",
            "app[12 : not a tag either",
            "[12]: no app name",
        ] {
            let line = format!("<13>Dec  1 09:05:01 host {body}");
            check(
                line.as_bytes(),
                DEC_1_2026,
                SyslogMessage {
                    message: body.into(),
                    ..untagged.clone()
                },
            );
        }
        check(
            b"<13>Dec  1 09:05:01",
            DEC_1_2026,
            SyslogMessage {
                hostname: None,
                ..untagged.clone()
            },
        );
        check(b"<13>Dec  1 09:05:01 host", DEC_1_2026, untagged);
    }

    #[test]
    fn raw_fallbacks() {
        let raw = |message: &str| SyslogMessage {
            message: message.into(),
            ..SyslogMessage::empty(Format::Raw)
        };
        check(b"just text\r\n\0", 0, raw("just text"));
        check(b"<999>1 - - - - - - x", 0, raw("<999>1 - - - - - - x"));
        check(b"<1000>x", 0, raw("<1000>x"));
        check(b"<>x", 0, raw("<>x"));
        check(b"<12", 0, raw("<12"));
        check(b"", 0, raw(""));
        check(
            b"\xFF\xFE<\x00bad\x80",
            0,
            raw("\u{FFFD}\u{FFFD}<\u{0}bad\u{FFFD}"),
        );
        let raw_after_pri = |message: &str| SyslogMessage {
            facility: Some(4),
            severity: Some(2),
            message: message.into(),
            ..SyslogMessage::empty(Format::Raw)
        };
        for header in [
            "1 2003-10-11T22:14:15.003Z mymachine",
            "1 2003-10-11T22:14:15.003Z host app - - [bad",
            "1 2003-10-11T22:14:15.003Z host app - - [id p=\"unterminated]",
            "1 2003-10-11T22:14:15.003Z host app - - [id p=unquoted]",
            "1 2003-10-11T22:14:15.003Z host app - - -x",
            "1 2003-10-11T22:14:15.003Z host app - - [a][",
            "1  host app - - - double space",
            "1 - host\tname app - - - tab",
        ] {
            check(format!("<34>{header}").as_bytes(), 0, raw_after_pri(header));
        }
        let long = "h".repeat(256);
        for header in [
            format!("1 - {long} app - - - msg"),
            format!("Oct 11 22:14:15 {long} su: msg"),
            format!("1 - - - - - [{}] msg", "i".repeat(33)),
        ] {
            check(
                format!("<34>{header}").as_bytes(),
                0,
                raw_after_pri(&header),
            );
        }
        check(
            b"<34>Oct 11 22:14:15 h\xC3\xA9 su: msg",
            0,
            raw_after_pri("Oct 11 22:14:15 h\u{e9} su: msg"),
        );
        let longest = format!("<34>1 - {} - - - - msg", "h".repeat(255));
        assert_eq!(parse(longest.as_bytes(), 0).format, Format::Rfc5424);
    }

    #[test]
    fn names_and_otlp_severities() {
        let severities: Vec<_> = (0..=8)
            .map(|s| (severity_name(s), otlp_severity(s)))
            .collect();
        assert_eq!(
            severities,
            [
                ("emerg", 21),
                ("alert", 21),
                ("crit", 21),
                ("err", 17),
                ("warning", 13),
                ("notice", 10),
                ("info", 9),
                ("debug", 5),
                ("unknown", 0),
            ]
        );
        assert_eq!(facility_name(0), "kern");
        assert_eq!(facility_name(10), "authpriv");
        assert_eq!(facility_name(15), "solaris-cron");
        assert_eq!(facility_name(16), "local0");
        assert_eq!(facility_name(23), "local7");
        assert_eq!(facility_name(24), "unknown");
    }

    /// Frames of `chunks` pushed one after another, then `finish`ed, and the oversized count.
    fn frames(max_frame: usize, chunks: &[&[u8]]) -> (Vec<String>, u64) {
        let mut decoder = FrameDecoder::new(max_frame);
        let mut out = Vec::new();
        for chunk in chunks {
            decoder.push(chunk, &mut out);
        }
        decoder.finish(&mut out);
        let out = out
            .iter()
            .map(|frame| String::from_utf8_lossy(frame).into_owned())
            .collect();
        (out, decoder.oversized())
    }

    #[test]
    fn octet_counting_split_across_pushes() {
        assert_eq!(
            frames(100, &[b"1", b"1 <13>hel", b"lo w", b"5 <1>ab"]),
            (vec!["<13>hello w".into(), "<1>ab".into()], 0)
        );
        assert_eq!(
            frames(100, &[b"11 <13>1 - - -", b"10 ", b"<14>x y z."]),
            (vec!["<13>1 - - -".into(), "<14>x y z.".into()], 0)
        );
    }

    #[test]
    fn newline_framing_drops_cr_and_empty_lines() {
        assert_eq!(
            frames(
                100,
                &[b"<13>one\r\n<13>tw", b"o\n\r\n\n<13>th", b"ree\r", b"\n"]
            ),
            (
                vec!["<13>one".into(), "<13>two".into(), "<13>three".into()],
                0
            )
        );
    }

    #[test]
    fn framing_is_decided_per_frame() {
        assert_eq!(
            frames(100, &[b"4 <1>a<2>b\n3 <3>\n<4>d\r\n7 <5>e\r\nf"]),
            (
                vec![
                    "<1>a".into(),
                    "<2>b".into(),
                    "<3>".into(),
                    "<4>d".into(),
                    "<5>e\r\nf".into(),
                ],
                0
            )
        );
    }

    #[test]
    fn a_count_without_its_space_begins_a_line() {
        assert_eq!(
            frames(100, &[b"12<13>x\n2026-12-01 line\n1234567890 ten digits\n"]),
            (
                vec![
                    "12<13>x".into(),
                    "2026-12-01 line".into(),
                    "1234567890 ten digits".into(),
                ],
                0
            )
        );
    }

    #[test]
    fn oversized_frames_are_cut_and_counted() {
        // Octet-counted: 12 bytes cut to 5, the other 7 skipped across pushes.
        assert_eq!(
            frames(5, &[b"12 abcdefg", b"hijkl4 <1>x"]),
            (vec!["abcde".into(), "<1>x".into()], 1)
        );
        // Newline-framed, the LF in a later push; 5 bytes and a CR fit.
        assert_eq!(
            frames(5, &[b"abcdefgh", b"ijk", b"lm\nabcde\r\nabcdef\nxy"]),
            (
                vec!["abcde".into(), "abcde".into(), "abcde".into(), "xy".into()],
                2
            )
        );
        // An unending line never holds more than `max_frame + 1` bytes.
        let mut decoder = FrameDecoder::new(10);
        let mut out = Vec::new();
        for _ in 0..1000 {
            decoder.push(&[b'x'; 100], &mut out);
            assert!(decoder.frame.len() <= 11);
        }
        assert_eq!((out.len(), decoder.oversized()), (1, 1));
    }

    #[test]
    fn finish_emits_the_unterminated_last_frame() {
        assert_eq!(
            frames(100, &[b"<13>a\n<13>unterminated"]),
            (vec!["<13>a".into(), "<13>unterminated".into()], 0)
        );
        assert_eq!(frames(100, &[b"<13>cr\r"]), (vec!["<13>cr".into()], 0));
        assert_eq!(frames(100, &[b"42"]), (vec!["42".into()], 0));
        assert_eq!(
            frames(100, &[b"20 <13>cut short"]),
            (vec!["<13>cut short".into()], 0)
        );
        assert_eq!(frames(100, &[b"a\n"]), (vec!["a".into()], 0));
        assert_eq!(frames(100, &[]), (vec![], 0));
    }

    /// A xorshift64 generator: deterministic pseudo-random numbers without a dependency.
    struct XorShift(u64);

    impl XorShift {
        fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// `parse` of `line` does not panic and its parts are no larger than O(`line`).
    fn check_bounded(line: &[u8]) {
        let message = parse(line, 1_798_761_599_000_000_000);
        let sd_bytes: usize = message
            .structured_data
            .iter()
            .map(|(key, value)| key.len() + value.len())
            .sum();
        // Invalid UTF-8 triples at most; a key repeats its SD-ID (32 bytes at most) for every
        // parameter, which takes at least 5 bytes (` a=""`).
        assert!(message.message.len() <= 3 * line.len(), "{line:?}");
        assert!(sd_bytes <= 20 * line.len(), "{line:?}");
    }

    #[test]
    fn random_and_truncated_input_never_panics() {
        let valid: Vec<&[u8]> = RFC5424_EXAMPLES
            .iter()
            .copied()
            .chain([
                &br#"<14>1 2026-03-01T10:00:00.5+01:00 host app 1 - [meta path="C:\\dir" q="\"" b="\]"][o] m"#[..],
                &b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed"[..],
                &b"<13>Dec  1 09:05:01 host cron[123]: job done"[..],
                &b"<30>2026-12-01T12:00:00.123456+00:00 host app[12]: msg"[..],
            ])
            .collect();
        for line in &valid {
            for end in 0..=line.len() {
                check_bounded(&line[..end]);
                check_bounded(&line[end..]);
            }
        }
        let alphabet = b"<>0123456789 -[]\"\\=:.TZ+\r\n\xEF\xBB\xBF\xFFaOct";
        let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
        for _ in 0..5000 {
            let len = rng.below(120);
            let mut line: Vec<u8> = match rng.below(3) {
                // Bytes from the syslog alphabet, to reach deep into the grammar.
                0 => (0..len)
                    .map(|_| alphabet[rng.below(alphabet.len())])
                    .collect(),
                // A valid line with some bytes overwritten.
                1 => {
                    let mut line = valid[rng.below(valid.len())].to_vec();
                    for _ in 0..=rng.below(4) {
                        let at = rng.below(line.len());
                        line[at] = alphabet[rng.below(alphabet.len())];
                    }
                    line
                }
                _ => (0..len).map(|_| rng.next_u64() as u8).collect(),
            };
            if rng.below(4) == 0 {
                line.truncate(rng.below(line.len() + 1));
            }
            check_bounded(&line);
            // The same bytes as a stream, in random chunks, never give a frame over the limit.
            let max_frame = 1 + rng.below(40);
            let mut decoder = FrameDecoder::new(max_frame);
            let mut out = Vec::new();
            let mut rest = &line[..];
            while !rest.is_empty() {
                let (chunk, after) = rest.split_at(1 + rng.below(rest.len()));
                decoder.push(chunk, &mut out);
                rest = after;
            }
            decoder.finish(&mut out);
            assert!(out.iter().all(|frame| frame.len() <= max_frame), "{line:?}");
        }
    }

    #[test]
    fn frames_do_not_depend_on_where_the_stream_is_split() {
        let stream: &[u8] =
            b"11 <13>1 - - -<13>first line\r\n50 <34>Oct 11 22:14:15 mymachine su: 'su root' failed\n<13>last";
        let (whole, _) = frames(1000, &[stream]);
        assert_eq!(whole.len(), 4);
        for split in 0..=stream.len() {
            let (left, right) = stream.split_at(split);
            assert_eq!(frames(1000, &[left, right]).0, whole, "split at {split}");
        }
    }
}
