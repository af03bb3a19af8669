//! `sextant patterns mine [FILE]`: log template mining offline, one message per line, CSV out.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use sextant_analytics::patterns::{MinerConfig, Outcome, TemplateId, TemplateMiner};

#[derive(Debug, Subcommand)]
pub enum PatternsCommand {
    /// Mine templates from log messages (one per line; invalid UTF-8 is replaced) and write
    /// CSV `line,template_id,template` to stdout, with each line's final template.
    Mine {
        /// File to read; standard input without it.
        file: Option<PathBuf>,
    },
}

pub fn run(command: PatternsCommand) -> anyhow::Result<()> {
    match command {
        PatternsCommand::Mine { file } => {
            let input: Box<dyn Read> = match &file {
                Some(path) => Box::new(
                    File::open(path)
                        .with_context(|| format!("cannot open `{}`", path.display()))?,
                ),
                None => Box::new(io::stdin().lock()),
            };
            let stdout = io::stdout().lock();
            mine(BufReader::with_capacity(1 << 16, input), stdout)
        }
    }
}

/// Mines every line of `input`, then writes one CSV row per line with the template that line
/// ended up in (a template may generalise after a line joined it, so rows come at the end).
fn mine(mut input: impl BufRead, output: impl Write) -> anyhow::Result<()> {
    let config = MinerConfig::default();
    // Keep a little more than the miner looks at, so it still sees that a line was cut.
    let max_line_bytes = config.max_line_bytes + 4;
    let mut miner = TemplateMiner::new(config)?;
    let mut ids: Vec<TemplateId> = Vec::new();
    // The last text each template had, for ids evicted before the end.
    let mut last_text: std::collections::HashMap<TemplateId, String> = Default::default();
    let mut buffer = Vec::new();
    while read_line(&mut input, &mut buffer, max_line_bytes).context("cannot read input")? {
        let line = String::from_utf8_lossy(trim_newline(&buffer));
        let result = miner.mine(&line, ids.len() as i64);
        if (result.outcome != Outcome::Matched || !last_text.contains_key(&result.id))
            && let Some(template) = miner.template(result.id)
        {
            last_text.insert(result.id, template.text());
        }
        ids.push(result.id);
    }
    let mut writer = csv::Writer::from_writer(BufWriter::new(output));
    writer.write_record(["line", "template_id", "template"])?;
    for (at, &id) in ids.iter().enumerate() {
        let (id, text) = match miner.template(id) {
            Some(template) => (template.id(), template.text()),
            None => (id, last_text.get(&id).cloned().unwrap_or_default()),
        };
        writer.write_record([(at + 1).to_string(), id.to_string(), text])?;
    }
    writer.flush().context("cannot write output")?;
    Ok(())
}

/// Reads one line (through `\n`) into `buffer`, keeping at most `limit` bytes of it and
/// skipping the rest, so one endless line cannot exhaust memory. `false` at end of input.
fn read_line(input: &mut impl BufRead, buffer: &mut Vec<u8>, limit: usize) -> io::Result<bool> {
    buffer.clear();
    let mut read_any = false;
    loop {
        let available = input.fill_buf()?;
        if available.is_empty() {
            return Ok(read_any);
        }
        read_any = true;
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(at) => (&available[..=at], true),
            None => (available, false),
        };
        let room = limit.saturating_sub(buffer.len());
        buffer.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = chunk.len();
        input.consume(used);
        if done {
            return Ok(true);
        }
    }
}

fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}
