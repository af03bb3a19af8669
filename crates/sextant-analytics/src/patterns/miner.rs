//! `TemplateMiner`: one pass over log lines, each line gets the id of its template.

use std::collections::VecDeque;

use foldhash::HashMap;
use serde::{Deserialize, Serialize};

use super::dates::{DatePart, date_part, date_runs};
use super::mask::{WILDCARD, mask_token};
use super::tokens::{
    differs_in_digits_only, differs_in_numbers_only, is_constant_name, is_soft_difference, is_unit,
    is_value_like, merge_numbers, merge_tokens, starts_lowercase, token_matches, varies_inside,
};
use crate::error::{Error, Result};

/// The id of a template. Stable: an id never changes meaning. When a template generalises
/// (a token becomes `<*>`) it keeps its id; when two templates merge, the younger id becomes an
/// alias of the older one ([`TemplateMiner::resolve`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TemplateId(pub u64);

impl std::fmt::Display for TemplateId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// How the miner is bounded and how eagerly it merges.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MinerConfig {
    /// Most templates kept at once (default 10,000). When a new template would pass it, the
    /// least recently seen sixteenth of the templates (at least one) is evicted; lines of an
    /// evicted template later start a new template with a new id.
    pub max_templates: usize,
    /// Longest line looked at, in bytes (default 65,536 = 64 KiB). A longer line is cut at the
    /// last character boundary at or before it, and its result says `truncated`.
    pub max_line_bytes: usize,
    /// Share of a line's tokens (0 to 1, default 0.2) that may differ from a template of the
    /// same token count, after masking, for the line to join it; the differing tokens become
    /// variables. At least one differing token is always allowed for lines of three or more
    /// tokens.
    pub max_difference: f64,
    /// How many templates differing from each other only in plain words, in the same places,
    /// it takes before those words are taken for a variable (default 5): `VM Started`,
    /// `VM Stopped`, `VM Paused` and `VM Resumed` stay four templates.
    pub word_variants: usize,
    /// The same when every differing word starts with a lower-case letter (default 3), as
    /// names of users, hosts and services do: `session opened for user cyrus`, `… news` and
    /// `… test` make the name a `<*>`.
    pub lowercase_word_variants: usize,
}

impl Default for MinerConfig {
    fn default() -> Self {
        MinerConfig {
            max_templates: 10_000,
            max_line_bytes: 64 * 1024,
            max_difference: 0.2,
            word_variants: 5,
            lowercase_word_variants: 3,
        }
    }
}

impl MinerConfig {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<()> {
        if self.max_templates == 0 {
            return Err(Error::InvalidConfig {
                field: "max_templates",
                reason: "must be at least 1",
            });
        }
        if self.max_line_bytes == 0 {
            return Err(Error::InvalidConfig {
                field: "max_line_bytes",
                reason: "must be at least 1",
            });
        }
        if !(0.0..=1.0).contains(&self.max_difference) {
            return Err(Error::InvalidConfig {
                field: "max_difference",
                reason: "must be between 0 and 1",
            });
        }
        Ok(())
    }
}

/// Most templates of one bucket compared with a new line (the most recently placed first), so
/// a flood of unique lines costs bounded work per line.
const MAX_CANDIDATES: usize = 64;

/// Most value-like tokens skipped to join a template of another length.
const MAX_SKIPS: usize = 6;
/// Longest line (in tokens) tried against templates of other lengths.
const MAX_ALIGN_TOKENS: usize = 256;

/// Longest example line kept per template, in bytes.
const MAX_EXAMPLE_BYTES: usize = 1024;
/// Most masked forms remembered per template for the exact-match fast path (the oldest is
/// forgotten first).
const MAX_KEYS_PER_TEMPLATE: usize = 32;

/// One template: its text, how often and when it was seen, and one line it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Template {
    id: TemplateId,
    tokens: Vec<String>,
    count: u64,
    first_seen: i64,
    last_seen: i64,
    example: String,
    /// The miner's line counter when this template last matched (least recently seen goes
    /// first on eviction).
    touched: u64,
    /// Masked forms that reach this template by the fast path, oldest first.
    #[serde(default)]
    keys: Vec<Box<str>>,
    #[serde(skip)]
    bucket: BucketKey,
}

impl Template {
    /// This template's id.
    pub fn id(&self) -> TemplateId {
        self.id
    }

    /// The template text: tokens joined by one space, variables as `<*>`.
    pub fn text(&self) -> String {
        self.tokens.join(" ")
    }

    /// The template's tokens.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// Lines that matched this template (including lines of templates merged into it).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Smallest timestamp passed with a matching line.
    pub fn first_seen(&self) -> i64 {
        self.first_seen
    }

    /// Largest timestamp passed with a matching line.
    pub fn last_seen(&self) -> i64 {
        self.last_seen
    }

    /// The first line of this template (cut to 1 KiB).
    pub fn example(&self) -> &str {
        &self.example
    }

    fn wildcard_positions(&self) -> usize {
        self.tokens
            .iter()
            .filter(|token| token.contains(WILDCARD))
            .count()
    }
}

/// What mining one line did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MineResult {
    /// The line's template.
    pub id: TemplateId,
    /// What happened to the template.
    pub outcome: Outcome,
    /// The line was longer than `max_line_bytes` and only its start was mined.
    pub truncated: bool,
}

/// What happened to the template a line went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The line fit an existing template as it was.
    Matched,
    /// The line fit an existing template once some of its tokens became variables.
    Generalised,
    /// The line started a new template.
    Created,
}

/// The persisted form of a miner: everything needed to carry on where it stopped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinerState {
    pub config: MinerConfig,
    pub next_id: u64,
    pub clock: u64,
    pub templates: Vec<Template>,
    /// Merged ids and the id they resolve to, oldest merge first.
    pub aliases: Vec<(TemplateId, TemplateId)>,
    /// The fast path: masked line to template, by masked line. Empty in states saved before
    /// it was kept (then it is rebuilt from the templates' keys).
    #[serde(default)]
    pub exact: Vec<(Box<str>, TemplateId)>,
    /// Every bucket's templates in search order, one bucket after another. Empty in states
    /// saved before it was kept (then templates go in id order).
    #[serde(default)]
    pub bucket_order: Vec<TemplateId>,
}

/// A streaming log template miner (Drain family).
///
/// Each line is cut into whitespace-separated tokens and every token is masked by generic
/// rules ([`mask_token`]: numbers, addresses, ids, paths, … become `<*>`); a date written over
/// several tokens (`Fri Jun 17 07:07:00 2005`) becomes one `<*>`, and so do the tokens of a
/// value inside a quoted string. A line whose masked form was seen before goes straight to
/// its template (one hash lookup: the hot path). Otherwise the line is compared with the
/// templates of its bucket (same token count, same first-token head), most recently used
/// first, at most 64 of them:
///
/// - the closest template whose differing tokens are at most `max_difference` of the line
///   takes it, and those tokens become variables (keeping a shared `key=` prefix), when the
///   differences look like values: a shared `key=`/`key:` with different values, or a unit
///   after a value (`<*> KB`, `<*> B`);
/// - differences in plain words (`VM Started`, `VM Stopped`) keep templates apart until
///   `word_variants` templates differ in the same places; then they merge. A different first
///   token or a different upper-case constant (`RUNNING`, `NEW`) never merges;
/// - failing that, a template of a nearby length that the line fits once a few value-like
///   tokens (variables, units) are skipped takes it unchanged (`0 bytes sent` and
///   `1190 bytes (1.16 KB) sent` are one event);
/// - otherwise the line starts a new template.
///
/// When a template generalises, the templates of its bucket that it now covers merge into it:
/// the oldest id survives and the others become aliases ([`TemplateMiner::resolve`]).
///
/// Memory is bounded: at most `max_templates` templates (least recently seen evicted),
/// `max_line_bytes` per line, 1 KiB per example, 32 remembered masked forms per template, and
/// `max_templates` aliases (oldest dropped). Work per line is bounded too: a line that misses
/// the hot path is compared with at most 64 templates of its own length and of each nearby
/// length.
#[derive(Debug)]
pub struct TemplateMiner {
    config: MinerConfig,
    next_id: u64,
    clock: u64,
    templates: HashMap<TemplateId, Template>,
    /// Templates by token count and the head of their first token (see [`head`]), most
    /// recently placed last.
    buckets: HashMap<BucketKey, Vec<TemplateId>>,
    /// Masked line to template: the fast path.
    exact: HashMap<Box<str>, TemplateId>,
    aliases: HashMap<TemplateId, TemplateId>,
    alias_order: VecDeque<TemplateId>,
    /// Reused per line: the masked line and its token ranges.
    masked: String,
    spans: Vec<(usize, usize)>,
    date_parts: Vec<DatePart>,
}

impl TemplateMiner {
    /// A miner with `config`, checked.
    pub fn new(config: MinerConfig) -> Result<Self> {
        config.validate()?;
        Ok(TemplateMiner {
            config,
            next_id: 1,
            clock: 0,
            templates: HashMap::default(),
            buckets: HashMap::default(),
            exact: HashMap::default(),
            aliases: HashMap::default(),
            alias_order: VecDeque::new(),
            masked: String::new(),
            spans: Vec::new(),
            date_parts: Vec::new(),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &MinerConfig {
        &self.config
    }

    /// Mines one line seen at `timestamp` (any unit the caller likes, compared as numbers).
    pub fn mine(&mut self, line: &str, timestamp: i64) -> MineResult {
        let (line, truncated) = cut(line, self.config.max_line_bytes);
        self.clock += 1;
        self.masked.clear();
        self.spans.clear();
        self.date_parts.clear();
        let mut strong_date_parts = 0;
        let mut quoted = false;
        for token in line.split_ascii_whitespace() {
            if !self.masked.is_empty() {
                self.masked.push(' ');
            }
            let start = self.masked.len();
            mask_token(token, &mut self.masked);
            // Inside a quoted string a value may span several tokens
            // (`"GET /v2/servers HTTP/1.1"`): `<*> <*>"` is one `<*>"`.
            if quoted
                && self.masked[start..].starts_with(WILDCARD)
                && let Some(&(prev_start, prev_end)) = self.spans.last()
                && &self.masked[prev_start..prev_end] == WILDCARD
            {
                self.masked.replace_range(prev_start..start, "");
                self.spans.pop();
                self.date_parts.pop();
                self.spans.push((prev_start, self.masked.len()));
                self.date_parts.push(DatePart::None);
            } else {
                self.spans.push((start, self.masked.len()));
                let part = date_part(token);
                strong_date_parts += usize::from(matches!(part, DatePart::Month | DatePart::Clock));
                self.date_parts.push(part);
            }
            if token.bytes().filter(|&b| b == b'"').count() % 2 == 1 {
                quoted = !quoted;
            }
        }
        if strong_date_parts > 0 {
            self.collapse_dates();
        }
        if let Some(&id) = self.exact.get(self.masked.as_str()) {
            self.touch(id, timestamp);
            return MineResult {
                id,
                outcome: Outcome::Matched,
                truncated,
            };
        }
        let (id, outcome) = self.place(line, timestamp);
        MineResult {
            id,
            outcome,
            truncated,
        }
    }

    /// Rewrites runs of tokens that together spell a date and time (`Fri Jun 17 07:07:00 2005`,
    /// `2017-05-16 05:00:00`) as one `<*>`. Allocates only when there is one.
    fn collapse_dates(&mut self) {
        let runs = date_runs(&self.date_parts);
        if runs.clone().next().is_none() {
            return;
        }
        let mut masked = String::with_capacity(self.masked.len());
        let mut spans = Vec::with_capacity(self.spans.len());
        let mut runs = runs.peekable();
        let mut i = 0;
        while i < self.spans.len() {
            if !masked.is_empty() {
                masked.push(' ');
            }
            let start = masked.len();
            match runs.peek() {
                Some(&(run_start, run_end)) if run_start == i => {
                    masked.push_str(WILDCARD);
                    i = run_end;
                    runs.next();
                }
                _ => {
                    let (s, e) = self.spans[i];
                    masked.push_str(&self.masked[s..e]);
                    i += 1;
                }
            }
            spans.push((start, masked.len()));
        }
        self.masked = masked;
        self.spans = spans;
    }

    /// The live id `id` stands for now: itself, the template it was merged into, or `None`
    /// once evicted (or if its alias was dropped).
    pub fn resolve(&self, id: TemplateId) -> Option<TemplateId> {
        if self.templates.contains_key(&id) {
            return Some(id);
        }
        let target = *self.aliases.get(&id)?;
        self.templates.contains_key(&target).then_some(target)
    }

    /// The template `id` resolves to.
    pub fn template(&self, id: TemplateId) -> Option<&Template> {
        self.templates.get(&self.resolve(id)?)
    }

    /// All live templates, in no particular order.
    pub fn templates(&self) -> impl Iterator<Item = &Template> {
        self.templates.values()
    }

    /// How many templates are live.
    pub fn len(&self) -> usize {
        self.templates.len()
    }

    /// Whether no template exists yet.
    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    /// Merged ids and the live id each resolves to, oldest merge first.
    pub fn aliases(&self) -> impl Iterator<Item = (TemplateId, TemplateId)> + '_ {
        self.alias_order
            .iter()
            .filter_map(|id| Some((*id, *self.aliases.get(id)?)))
    }

    /// A copy of the state, for persisting. A miner restored from it mines every later line
    /// exactly as this one would.
    pub fn state(&self) -> MinerState {
        let mut templates: Vec<Template> = self.templates.values().cloned().collect();
        templates.sort_by_key(|template| template.id);
        let mut exact: Vec<(Box<str>, TemplateId)> = self
            .exact
            .iter()
            .map(|(key, id)| (key.clone(), *id))
            .collect();
        exact.sort();
        let mut buckets: Vec<&Vec<TemplateId>> = self.buckets.values().collect();
        // Buckets are independent of each other; sorted only so that equal miners give equal
        // states.
        buckets.sort_by_key(|ids| ids.first().copied());
        MinerState {
            config: self.config.clone(),
            next_id: self.next_id,
            clock: self.clock,
            templates,
            aliases: self
                .alias_order
                .iter()
                .filter_map(|id| Some((*id, *self.aliases.get(id)?)))
                .collect(),
            exact,
            bucket_order: buckets.into_iter().flatten().copied().collect(),
        }
    }

    /// A miner that carries on from `state`.
    pub fn from_state(state: MinerState) -> Result<Self> {
        let mut miner = TemplateMiner::new(state.config)?;
        miner.next_id = state.next_id;
        miner.clock = state.clock;
        let keep_exact = !state.exact.is_empty();
        for mut template in state.templates {
            if template.id.0 >= state.next_id {
                return Err(Error::InvalidState {
                    reason: "template id at or above `next_id`",
                });
            }
            if template.tokens.iter().any(|token| token.is_empty()) {
                return Err(Error::InvalidState {
                    reason: "empty template token",
                });
            }
            if template.keys.is_empty() {
                template.keys = vec![template.tokens.join(" ").into()];
            }
            template.keys.truncate(MAX_KEYS_PER_TEMPLATE);
            if !keep_exact {
                for key in &template.keys {
                    miner.exact.insert(key.clone(), template.id);
                }
            }
            template.bucket = bucket_key(
                template.tokens.len(),
                template.tokens.first().map_or("", String::as_str),
            );
            if miner.templates.insert(template.id, template).is_some() {
                return Err(Error::InvalidState {
                    reason: "duplicate template id",
                });
            }
        }
        if keep_exact {
            for (key, id) in state.exact {
                miner.exact.insert(key, id);
            }
        }
        // Buckets in their saved search order; templates the order does not name go after,
        // by id.
        let mut placed = std::collections::HashSet::new();
        let mut ids: Vec<TemplateId> = state.bucket_order;
        let mut rest: Vec<TemplateId> = miner.templates.keys().copied().collect();
        rest.sort();
        ids.extend(rest);
        for id in ids {
            let Some(template) = miner.templates.get(&id) else {
                continue;
            };
            if placed.insert(id) {
                miner.buckets.entry(template.bucket).or_default().push(id);
            }
        }
        for (from, to) in state.aliases {
            miner.add_alias(from, to);
        }
        Ok(miner)
    }

    fn touch(&mut self, id: TemplateId, timestamp: i64) {
        if let Some(template) = self.templates.get_mut(&id) {
            template.count += 1;
            template.first_seen = template.first_seen.min(timestamp);
            template.last_seen = template.last_seen.max(timestamp);
            template.touched = self.clock;
        }
    }

    /// The slow path: the masked line is new. Finds the closest template of the same length or
    /// starts a new one.
    fn place(&mut self, line: &str, timestamp: i64) -> (TemplateId, Outcome) {
        let length = self.spans.len();
        let allowed = allowed_differences(length, self.config.max_difference);
        let mut best: Option<(TemplateId, Comparison, usize)> = None;
        let mut soft_families: Vec<u64> = Vec::new();
        if let Some(candidates) = self.buckets.get(&self.line_bucket(length)) {
            for &id in candidates.iter().rev().take(MAX_CANDIDATES) {
                let template = &self.templates[&id];
                let Some(comparison) = self.compare(template, allowed) else {
                    continue;
                };
                if comparison.needs_variants() {
                    soft_families.push(comparison.positions);
                }
                let wildcards = template.wildcard_positions();
                // A template the line joins outright beats one that would need more variants
                // of a word first; then the fewest differences, then the fewest wildcards.
                let rank = |c: &Comparison, wildcards: usize| {
                    (c.needs_variants(), c.differences, wildcards)
                };
                let better = best.as_ref().is_none_or(|(_, closest, closest_wildcards)| {
                    rank(&comparison, wildcards) < rank(closest, *closest_wildcards)
                });
                if better {
                    best = Some((id, comparison, wildcards));
                }
            }
        }
        let Some((id, closest, _)) = best else {
            return match self.join_other_length() {
                Some(id) => {
                    self.promote(id);
                    self.remember(id);
                    self.touch(id, timestamp);
                    (id, Outcome::Matched)
                }
                None => (self.create(line, timestamp), Outcome::Created),
            };
        };
        if closest.differences == 0 {
            self.promote(id);
            self.remember(id);
            self.touch(id, timestamp);
            return (id, Outcome::Matched);
        }
        if closest.needs_variants() {
            // Lines that differ from their neighbours only in plain words (`VM Started`,
            // `VM Stopped`) are different events until enough variants turn up to make the
            // word look like a value (`Invalid user admin`, `… guest`, `… oracle`, …).
            // Lower-case words (names of users, hosts, services) need fewer variants than
            // capitalised ones (`Started`, `Paused`).
            let siblings = soft_families
                .iter()
                .filter(|&&positions| positions == closest.positions)
                .count();
            let needed = if closest.lowercase {
                self.config.lowercase_word_variants
            } else {
                self.config.word_variants
            };
            if siblings + 1 < needed {
                return (self.create(line, timestamp), Outcome::Created);
            }
        }
        self.promote(id);
        self.generalise(id);
        self.remember(id);
        self.touch(id, timestamp);
        (self.absorb_covered(id), Outcome::Generalised)
    }

    /// How the current masked line differs from `template`, or `None` past `allowed`
    /// differences, when no literal token is shared (a template keeps an anchor), or when a
    /// difference rules the template out (a first word, an upper-case constant).
    fn compare(&self, template: &Template, allowed: usize) -> Option<Comparison> {
        let mut comparison = Comparison {
            differences: 0,
            words: 0,
            soft_only: true,
            lowercase: true,
            positions: 0,
        };
        let mut anchors = 0;
        for (at, (pattern, &(start, end))) in template.tokens.iter().zip(&self.spans).enumerate() {
            let token = &self.masked[start..end];
            if token_matches(pattern, token) {
                anchors += usize::from(!pattern.contains(WILDCARD));
                continue;
            }
            comparison.differences += 1;
            if comparison.differences > allowed {
                return None;
            }
            // A word right after a value is often its unit (`<*> KB`, `<*> B`).
            let after_value =
                at > 0 && template.tokens[at - 1] == WILDCARD && is_unit(pattern) && is_unit(token);
            // Numbers inside a word are values (`dn228`, `dn731`), and so is a token already
            // seen to vary inside (`root<*>_tmp`): a difference there is a value's, which
            // neither needs variants nor lets a word change along with it.
            if differs_in_numbers_only(pattern, token) || varies_inside(pattern) {
                continue;
            }
            comparison.words += 1;
            let soft = !after_value && is_soft_difference(pattern, token);
            // Like Drain's first-token rule: a different leading word is a different event
            // (`boot (command 12)`, `halt (command 13)`); so is a different constant name,
            // unless only digits differ (`SOCKS4`, `SOCKS5`; `PSR0`, `PSR7`): those may name
            // kinds or count fields, and enough variants in one place make a value of them.
            let other_constant = is_constant_name(pattern)
                && is_constant_name(token)
                && !differs_in_digits_only(pattern, token);
            if soft && (at == 0 || other_constant) {
                return None;
            }
            comparison.soft_only &= soft;
            comparison.lowercase &= starts_lowercase(pattern) && starts_lowercase(token);
            comparison.positions |= 1 << (at % 64);
        }
        (anchors > 0 || comparison.differences == 0).then_some(comparison)
    }

    /// A template of a nearby length that the current line matches once a few value-like
    /// tokens are skipped on either side (`0 bytes sent` and `1190 bytes (1.16 KB) sent`).
    fn join_other_length(&self) -> Option<TemplateId> {
        let length = self.spans.len();
        if length == 0 || length > MAX_ALIGN_TOKENS {
            return None;
        }
        let mut best: Option<(usize, TemplateId)> = None;
        for other in length.saturating_sub(MAX_SKIPS).max(1)..=length + MAX_SKIPS {
            if other == length {
                continue;
            }
            let Some(candidates) = self.buckets.get(&self.line_bucket(other)) else {
                continue;
            };
            for &id in candidates.iter().rev().take(MAX_CANDIDATES) {
                if let Some(skips) = self.align(&self.templates[&id].tokens)
                    && best.is_none_or(|(fewest, _)| skips < fewest)
                {
                    best = Some((skips, id));
                }
            }
        }
        best.map(|(_, id)| id)
    }

    /// How many value-like tokens must be skipped to line the current line up with `pattern`,
    /// if at most `MAX_SKIPS` do and at least half the shorter side's tokens are literal
    /// matches.
    fn align(&self, pattern: &[String]) -> Option<usize> {
        let line = |at: usize| {
            let (start, end) = self.spans[at];
            &self.masked[start..end]
        };
        let (mut i, mut j, mut skips, mut anchors) = (0, 0, 0, 0);
        if !token_matches(&pattern[0], line(0)) {
            return None;
        }
        while i < pattern.len() || j < self.spans.len() {
            if i < pattern.len() && j < self.spans.len() && token_matches(&pattern[i], line(j)) {
                anchors += usize::from(!pattern[i].contains(WILDCARD));
                i += 1;
                j += 1;
                continue;
            }
            if j < self.spans.len() && is_value_like(line(j)) {
                j += 1;
            } else if i < pattern.len() && is_value_like(&pattern[i]) {
                i += 1;
            } else {
                return None;
            }
            skips += 1;
            if skips > MAX_SKIPS {
                return None;
            }
        }
        (anchors * 2 >= pattern.len().min(self.spans.len())).then_some(skips)
    }

    /// Generalises `id`'s differing tokens so the current masked line fits it.
    fn generalise(&mut self, id: TemplateId) {
        let template = self.templates.get_mut(&id).expect("live template");
        for (pattern, &(start, end)) in template.tokens.iter_mut().zip(&self.spans) {
            let token = &self.masked[start..end];
            if !token_matches(pattern, token) {
                *pattern =
                    merge_numbers(pattern, token).unwrap_or_else(|| merge_tokens(pattern, token));
            }
        }
    }

    /// The bucket of the current line, as if it had `length` tokens.
    fn line_bucket(&self, length: usize) -> BucketKey {
        let first = self
            .spans
            .first()
            .map_or("", |&(start, end)| &self.masked[start..end]);
        bucket_key(length, first)
    }

    /// Moves `id` to the end of its bucket, where the search starts.
    fn promote(&mut self, id: TemplateId) {
        let bucket = self.templates[&id].bucket;
        if let Some(ids) = self.buckets.get_mut(&bucket)
            && ids.last() != Some(&id)
            && let Some(at) = ids.iter().position(|&other| other == id)
        {
            ids.remove(at);
            ids.push(id);
        }
    }

    /// Adds the current masked line to the fast path of `id`.
    fn remember(&mut self, id: TemplateId) {
        let template = self.templates.get_mut(&id).expect("live template");
        if template.keys.len() >= MAX_KEYS_PER_TEMPLATE {
            // Forget the oldest masked form, so the fast path follows what is seen now.
            let oldest = template.keys.remove(0);
            if self.exact.get(&oldest) == Some(&id) {
                self.exact.remove(&oldest);
            }
        }
        let key: Box<str> = self.masked.as_str().into();
        template.keys.push(key.clone());
        self.exact.insert(key, id);
    }

    /// Merges into `id` every other template of its length that `id` now covers; returns the
    /// survivor (the oldest of them).
    fn absorb_covered(&mut self, id: TemplateId) -> TemplateId {
        let Some(candidates) = self.buckets.get(&self.templates[&id].bucket) else {
            return id;
        };
        let survivor = &self.templates[&id];
        let covered: Vec<TemplateId> = candidates
            .iter()
            .copied()
            .filter(|&other| other != id)
            .filter(|other| {
                let other = &self.templates[other];
                survivor
                    .tokens
                    .iter()
                    .zip(&other.tokens)
                    .all(|(pattern, token)| token_matches(pattern, token))
            })
            .collect();
        for other in covered {
            // The older id survives, so ids that callers saw first stay the answer.
            let (keep, gone) = if other < id { (other, id) } else { (id, other) };
            self.merge(keep, gone);
            if gone == id {
                // `id` is gone: carry on absorbing into the survivor.
                return self.absorb_covered(keep);
            }
        }
        id
    }

    /// Merges template `gone` into `keep`: counts add up, the wider token wins, and `gone`
    /// becomes an alias of `keep`.
    fn merge(&mut self, keep: TemplateId, gone: TemplateId) {
        let removed = self.remove(gone).expect("live template");
        let template = self.templates.get_mut(&keep).expect("live template");
        for (pattern, token) in template.tokens.iter_mut().zip(&removed.tokens) {
            if !token_matches(pattern, token) {
                *pattern = merge_tokens(pattern, token);
            }
        }
        template.count += removed.count;
        template.first_seen = template.first_seen.min(removed.first_seen);
        template.last_seen = template.last_seen.max(removed.last_seen);
        template.touched = template.touched.max(removed.touched);
        for key in removed.keys {
            if template.keys.len() < MAX_KEYS_PER_TEMPLATE {
                self.exact.insert(key.clone(), keep);
                template.keys.push(key);
            }
        }
        self.add_alias(gone, keep);
    }

    fn add_alias(&mut self, from: TemplateId, to: TemplateId) {
        // Keep aliases one hop deep: whatever pointed at `from` now points at `to`.
        for target in self.aliases.values_mut() {
            if *target == from {
                *target = to;
            }
        }
        self.aliases.insert(from, to);
        self.alias_order.push_back(from);
        while self.alias_order.len() > self.config.max_templates {
            if let Some(oldest) = self.alias_order.pop_front() {
                self.aliases.remove(&oldest);
            }
        }
    }

    fn create(&mut self, line: &str, timestamp: i64) -> TemplateId {
        if self.templates.len() >= self.config.max_templates {
            self.evict();
        }
        let id = TemplateId(self.next_id);
        self.next_id += 1;
        let tokens = self
            .spans
            .iter()
            .map(|&(start, end)| self.masked[start..end].to_owned())
            .collect::<Vec<_>>();
        let key: Box<str> = self.masked.as_str().into();
        self.exact.insert(key.clone(), id);
        let bucket = bucket_key(tokens.len(), tokens.first().map_or("", String::as_str));
        self.buckets.entry(bucket).or_default().push(id);
        self.templates.insert(
            id,
            Template {
                id,
                tokens,
                count: 1,
                first_seen: timestamp,
                last_seen: timestamp,
                example: cut(line, MAX_EXAMPLE_BYTES).0.to_owned(),
                touched: self.clock,
                keys: vec![key],
                bucket,
            },
        );
        id
    }

    /// Evicts the least recently seen sixteenth of the templates (at least one).
    fn evict(&mut self) {
        let mut by_age: Vec<(u64, TemplateId)> = self
            .templates
            .values()
            .map(|template| (template.touched, template.id))
            .collect();
        let count = (self.config.max_templates / 16).clamp(1, by_age.len());
        by_age.select_nth_unstable(count - 1);
        for (_, id) in by_age.into_iter().take(count) {
            self.remove(id);
        }
    }

    fn remove(&mut self, id: TemplateId) -> Option<Template> {
        let template = self.templates.remove(&id)?;
        for key in &template.keys {
            if self.exact.get(key) == Some(&id) {
                self.exact.remove(key);
            }
        }
        if let Some(ids) = self.buckets.get_mut(&template.bucket) {
            ids.retain(|&other| other != id);
            if ids.is_empty() {
                self.buckets.remove(&template.bucket);
            }
        }
        Some(template)
    }
}

/// How a line differs from a template of the same length.
#[derive(Clone, Copy, Debug)]
struct Comparison {
    /// Tokens that do not match.
    differences: usize,
    /// Of them, tokens that differ in more than the numbers inside them: the ones the
    /// following fields describe.
    words: usize,
    /// All such differences are soft (see [`is_soft_difference`]).
    soft_only: bool,
    /// All such differing tokens start with a lower-case letter on both sides.
    lowercase: bool,
    /// Where they differ, one bit per position (modulo 64).
    positions: u64,
}

impl Comparison {
    /// The line differs only in plain words (besides numbers): it joins only once enough
    /// variants turn up.
    fn needs_variants(&self) -> bool {
        self.words > 0 && self.soft_only
    }
}

/// Where a template is searched: its token count and the hash of its first token's head.
type BucketKey = (usize, u64);

fn bucket_key(length: usize, first_token: &str) -> BucketKey {
    use std::hash::BuildHasher;
    let hasher = foldhash::fast::FixedState::with_seed(0);
    (length, hasher.hash_one(head(first_token)))
}

/// The part of a first token that a line and the template it may join always share: up to
/// the first wildcard or digit (numbers inside a word are values), and no further than the
/// first `=` or `:` (a different first word is a different event, and `key=` keeps its key
/// when its value generalises).
fn head(token: &str) -> &str {
    let end = token
        .char_indices()
        .find(|&(at, c)| c.is_ascii_digit() || token[at..].starts_with(WILDCARD))
        .map_or(token.len(), |(at, _)| at);
    let before = &token[..end];
    match before.find(['=', ':']) {
        Some(at) => &token[..=at],
        None => before,
    }
}

/// `line` cut to at most `max` bytes at a character boundary, and whether it was cut.
fn cut(line: &str, max: usize) -> (&str, bool) {
    if line.len() <= max {
        return (line, false);
    }
    let mut end = max;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    (&line[..end], true)
}

/// How many tokens of a line of `length` tokens may differ from a template it joins.
fn allowed_differences(length: usize, max_difference: f64) -> usize {
    let share = (length as f64 * max_difference).floor() as usize;
    if length >= 3 { share.max(1) } else { share }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mines `lines` with `config` and returns each line's final template text.
    fn check(config: MinerConfig, lines: &[&str], expected: &[&str]) {
        let mut miner = TemplateMiner::new(config).unwrap();
        let ids: Vec<TemplateId> = lines
            .iter()
            .enumerate()
            .map(|(at, line)| miner.mine(line, at as i64).id)
            .collect();
        let texts: Vec<String> = ids
            .iter()
            .map(|&id| miner.template(id).unwrap().text())
            .collect();
        assert_eq!(texts, expected);
    }

    #[test]
    fn masks_and_groups() {
        check(
            MinerConfig::default(),
            &[
                "PacketResponder 1 for block blk_123 terminating",
                "PacketResponder 2 for block blk_-9 terminating",
                "",
                "session opened for user root by (uid=0)",
                "session opened for user cyrus by (uid=0)",
            ],
            &[
                "PacketResponder <*> for block <*> terminating",
                "PacketResponder <*> for block <*> terminating",
                "",
                // Two user names are not yet enough to call the name a variable.
                "session opened for user root by (uid=<*>)",
                "session opened for user cyrus by (uid=<*>)",
            ],
        );
    }

    #[test]
    fn generalisation_keeps_the_id() {
        let mut miner = TemplateMiner::new(MinerConfig::default()).unwrap();
        let first = miner.mine("login user=alice from host", 1);
        assert_eq!(first.outcome, Outcome::Created);
        let second = miner.mine("login user=bob from host", 2);
        assert_eq!(second.outcome, Outcome::Generalised);
        assert_eq!(second.id, first.id);
        let template = miner.template(first.id).unwrap();
        assert_eq!(template.text(), "login user=<*> from host");
        assert_eq!(template.count(), 2);
        assert_eq!((template.first_seen(), template.last_seen()), (1, 2));
        assert_eq!(template.example(), "login user=alice from host");
        let third = miner.mine("login user=carol from host", 3);
        assert_eq!((third.id, third.outcome), (first.id, Outcome::Matched));
    }

    #[test]
    fn plain_words_need_enough_variants() {
        let mut miner = TemplateMiner::new(MinerConfig::default()).unwrap();
        let ids: Vec<TemplateId> = ["Started", "Stopped", "Paused", "Resumed"]
            .iter()
            .map(|verb| miner.mine(&format!("VM {verb} (Lifecycle Event)"), 0).id)
            .collect();
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), 4, "four verbs are four events");
        let fifth = miner.mine("VM Suspended (Lifecycle Event)", 0);
        assert_eq!(fifth.id, ids[0], "the oldest id survives the merge");
        assert!(ids.iter().all(|&id| miner.resolve(id) == Some(ids[0])));
        assert_eq!(miner.len(), 1);
        assert_eq!(
            miner.template(ids[3]).unwrap().text(),
            "VM <*> (Lifecycle Event)"
        );
        assert_eq!(miner.template(ids[0]).unwrap().count(), 5);
    }

    #[test]
    fn merged_ids_resolve_to_the_survivor() {
        let mut miner = TemplateMiner::new(MinerConfig::default()).unwrap();
        let fast = miner.mine("conn user=alice mode=fast", 0).id;
        let slow = miner.mine("conn user=bob mode=slow", 0).id;
        assert_ne!(fast, slow, "two differences in three tokens are too many");
        // Each of these generalises one of the two; once one template covers the other, they
        // merge and the older id survives.
        miner.mine("conn user=bob mode=fast", 0);
        let last = miner.mine("conn user=carol mode=slow", 0);
        assert_eq!(last.id, fast);
        assert_eq!(miner.len(), 1);
        assert_eq!(miner.resolve(slow), Some(fast));
        assert_eq!(miner.resolve(fast), Some(fast));
        let next = miner.mine("conn user=dave mode=medium", 0);
        assert_eq!((next.id, next.outcome), (fast, Outcome::Matched));
        let template = miner.template(slow).unwrap();
        assert_eq!(template.text(), "conn user=<*> mode=<*>");
        assert_eq!(template.count(), 5);
        assert_eq!(miner.state().aliases, vec![(slow, fast)]);
    }

    #[test]
    fn dates_quoted_values_and_units() {
        check(
            MinerConfig::default(),
            &[
                "connection from 10.0.0.1 () at Fri Jun 17 07:07:00 2005",
                "connection from 10.0.0.2 () at Mon Jun 20 03:40:59 2005",
                "audit from 2017-05-16 05:00:00 to 2017-05-16 06:00:00.",
                "10.11.10.1 \"GET /v2/servers/detail HTTP/1.1\" status: 200",
                "a.example.org:1 close, 0 bytes sent, lifetime 00:01",
                "b.example.org:2 close, 1190 bytes (1.16 KB) sent, lifetime <1 sec",
            ],
            &[
                "connection from <*> () at <*>",
                "connection from <*> () at <*>",
                "audit from <*> to <*>",
                "<*> \"GET <*>\" status: <*>",
                "<*> close, <*> bytes sent, lifetime <*>",
                "<*> close, <*> bytes sent, lifetime <*>",
            ],
        );
    }

    #[test]
    fn odd_input_never_panics() {
        let long_token = "<*>".repeat(5000) + &"a:".repeat(5000);
        let many_tokens = "x ".repeat(20_000);
        let lines = [
            "",
            " \t ",
            "<*>",
            "<*> <*> <*>",
            ":::: ==== \"\"\" '' () [] {}",
            "é:ü=ß \u{0} \u{7f} \u{1b}[31m red",
            "日本語 ログ 123 テスト",
            "a://b://c:// ://",
            "C:\\ C:\\x\\y /// ~/ ./",
            "Jan Feb 12:00 Mon Tue 2005 1 2",
            "\"open quote <*> <*> and never closed",
            long_token.as_str(),
            many_tokens.as_str(),
        ];
        let config = MinerConfig {
            max_templates: 4,
            max_line_bytes: 1000,
            ..MinerConfig::default()
        };
        let mut miner = TemplateMiner::new(config).unwrap();
        for round in 0..3 {
            for line in lines {
                let result = miner.mine(line, round);
                assert!(miner.template(result.id).is_some());
                assert!(miner.len() <= 4);
            }
        }
    }

    #[test]
    fn eviction_keeps_the_bound() {
        let config = MinerConfig {
            max_templates: 32,
            ..MinerConfig::default()
        };
        let mut miner = TemplateMiner::new(config).unwrap();
        let keep = miner.mine("heartbeat ok", 0).id;
        for i in 0..1000 {
            let words = ["a", "b", "c", "d", "e", "f", "g", "h"];
            let line = format!(
                "{} {} {}",
                words[i % 8],
                words[(i / 8) % 8],
                words[(i / 64) % 8]
            );
            miner.mine(&line, i as i64);
            miner.mine("heartbeat ok", i as i64);
            assert!(miner.len() <= 32);
        }
        assert_eq!(miner.resolve(keep), Some(keep), "recently seen survives");
    }

    #[test]
    fn long_lines_are_cut_and_flagged() {
        let config = MinerConfig {
            max_line_bytes: 10,
            ..MinerConfig::default()
        };
        let mut miner = TemplateMiner::new(config).unwrap();
        let result = miner.mine("abcdefghié and more", 0);
        assert!(result.truncated);
        assert_eq!(miner.template(result.id).unwrap().text(), "abcdefghi");
        assert!(!miner.mine("short", 0).truncated);
    }

    #[test]
    fn state_round_trips() {
        let mut miner = TemplateMiner::new(MinerConfig::default()).unwrap();
        let a = miner.mine("connected to 10.0.0.1", 5).id;
        miner.mine("disk full", 6);
        let json = serde_json::to_string(&miner.state()).unwrap();
        let state: MinerState = serde_json::from_str(&json).unwrap();
        let mut restored = TemplateMiner::from_state(state).unwrap();
        assert_eq!(restored.state(), miner.state());
        let again = restored.mine("connected to 10.0.0.2", 7);
        assert_eq!((again.id, again.outcome), (a, Outcome::Matched));
        assert!(restored.mine("something new", 8).id > a);
    }
}
