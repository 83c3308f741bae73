//! Streaming decoder for the DATA phase: finds the end of data, undoes dot
//! stuffing and enforces the size cap while the bytes arrive.
//!
//! This is where SMTP smuggling is won or lost, so the rules are narrow and
//! explicit: data ends only at `<CR><LF>.<CR><LF>` where the `<CR><LF>` before
//! the dot ended a line (the start of DATA counts as such). Bare LF follows
//! Postfix's `smtpd_forbid_bare_newline`: either it is rejected outright, or
//! it ends a line like CRLF ("normalize") but the line after it can never be
//! the terminator, and `.<LF>` never is. A bare CR is content, never a line
//! end.
//!
//! The decoder writes straight into the message buffer; runs of ordinary
//! lines are found with `memchr` and copied in one piece. Past the size cap
//! nothing more is stored except the first header block (≤ 64 KiB), so a
//! 10 GB stream costs no more memory than the cap. The caller may take the
//! content decoded so far ([`DataDecoder::drain`]) to spool a large message
//! to a file while it arrives; [`DataDecoder::finish`] then gives the rest.

use memchr::{memchr_iter, memmem};

use crate::mail::BareLf;

/// Kept from an oversized message: its size and its header block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OversizeInfo {
    /// Bytes of content seen (after dot-unstuffing).
    pub size: usize,
    /// The header block as received (up to and including the blank line),
    /// at most [`HEAD_MAX`] bytes.
    pub head: Vec<u8>,
}

/// Upper bound of [`OversizeInfo::head`].
pub const HEAD_MAX: usize = 64 * 1024;

/// Why decoding stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataEnd {
    /// The terminator `<CR><LF>.<CR><LF>` was consumed.
    Complete,
    /// A bare LF arrived while [`BareLf::Reject`] is in force.
    BareLf,
}

/// The decoded message once data ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    Message(Vec<u8>),
    Oversize(OversizeInfo),
}

/// Position in the line grammar. "eligible" means the previous line ended
/// with a real CRLF (or this is the start of data), so a `.` line here may
/// terminate the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At the start of a line.
    LineStart { eligible: bool },
    /// Inside a line; the last byte was not CR.
    Mid,
    /// Inside a line; a CR is pending (not yet stored).
    MidCr,
    /// A `.` at line start was seen (and dropped: dot-unstuffing).
    Dot { eligible: bool },
    /// `.` then CR at line start; the CR is pending.
    DotCr { eligible: bool },
    /// Data ended; further input is not consumed.
    Done(DataEnd),
}

/// Incremental DATA decoder; feed it with [`DataDecoder::decode`] until it
/// reports an end, then take the result with [`DataDecoder::finish`].
#[derive(Debug)]
pub struct DataDecoder {
    state: State,
    bare_lf: BareLf,
    max_size: usize,
    /// Content bytes seen so far (saturating).
    size: usize,
    buf: Vec<u8>,
    over: Option<Head>,
    /// The first [`HEAD_MAX`] bytes of content, kept once content was
    /// drained: the header block of an oversize report.
    first: Option<Vec<u8>>,
}

/// Header block collected once the message went over the cap.
#[derive(Debug)]
struct Head {
    bytes: Vec<u8>,
    done: bool,
}

impl Head {
    fn append(&mut self, bytes: &[u8]) {
        if self.done {
            return;
        }
        let old = self.bytes.len();
        let room = HEAD_MAX.saturating_sub(old);
        self.bytes
            .extend_from_slice(bytes.get(..room).unwrap_or(bytes));
        let from = old.saturating_sub(3);
        let window = self.bytes.get(from..).unwrap_or_default();
        if let Some(pos) = memmem::find(window, b"\r\n\r\n") {
            self.bytes.truncate(from + pos + 4);
            self.done = true;
        } else if self.bytes.len() >= HEAD_MAX {
            self.done = true;
        }
    }
}

impl DataDecoder {
    /// A decoder storing at most `max_size` bytes of message content.
    pub fn new(max_size: usize, bare_lf: BareLf) -> Self {
        Self {
            state: State::LineStart { eligible: true },
            bare_lf,
            max_size,
            size: 0,
            buf: Vec::new(),
            over: None,
            first: None,
        }
    }

    /// Takes the content decoded so far when it is at least `at_least`
    /// bytes (and the message is not over the cap); what follows is decoded
    /// as before, and [`finish`](Self::finish) gives only the rest.
    pub fn drain(&mut self, at_least: usize) -> Option<Vec<u8>> {
        if self.over.is_some() || self.buf.len() < at_least.max(1) {
            return None;
        }
        let next = Vec::with_capacity(at_least.saturating_mul(2).min(self.max_size));
        let taken = std::mem::replace(&mut self.buf, next);
        if self.first.is_none() {
            self.first = Some(taken.get(..HEAD_MAX).unwrap_or(&taken).to_vec());
        }
        Some(taken)
    }

    /// Content bytes seen so far (after unstuffing), stored or not.
    pub fn size(&self) -> usize {
        self.size
    }

    /// True once the content went over the size cap.
    pub fn is_oversize(&self) -> bool {
        self.over.is_some()
    }

    /// How decoding ended, if it has.
    pub fn end(&self) -> Option<DataEnd> {
        match self.state {
            State::Done(end) => Some(end),
            _ => None,
        }
    }

    /// Decodes from `input`; returns how many bytes were consumed and, when
    /// the data ended, why. Bytes after the end are not consumed (they are
    /// the next commands). After an end, further calls consume nothing.
    pub fn decode(&mut self, input: &[u8]) -> (usize, Option<DataEnd>) {
        let mut i = 0;
        loop {
            if let State::Done(end) = self.state {
                return (i, Some(end));
            }
            let Some(&byte) = input.get(i) else {
                return (i, None);
            };
            match self.state {
                State::Mid => i += self.copy_run(input.get(i..).unwrap_or_default()),
                State::LineStart { eligible } => match byte {
                    b'.' => {
                        self.state = State::Dot { eligible };
                        i += 1;
                    }
                    b'\r' => {
                        self.state = State::MidCr;
                        i += 1;
                    }
                    b'\n' => {
                        self.bare_lf();
                        i += 1;
                    }
                    _ => self.state = State::Mid,
                },
                State::MidCr => match byte {
                    b'\n' => {
                        self.emit(b"\r\n");
                        self.state = State::LineStart { eligible: true };
                        i += 1;
                    }
                    b'\r' => {
                        self.emit(b"\r");
                        i += 1;
                    }
                    _ => {
                        self.emit(b"\r");
                        self.state = State::Mid;
                    }
                },
                State::Dot { eligible } => match byte {
                    b'\r' => {
                        self.state = State::DotCr { eligible };
                        i += 1;
                    }
                    b'\n' => {
                        // ".<LF>" is never a terminator.
                        self.bare_lf();
                        i += 1;
                    }
                    _ => self.state = State::Mid,
                },
                State::DotCr { eligible } => match byte {
                    b'\n' if eligible => {
                        self.state = State::Done(DataEnd::Complete);
                        i += 1;
                    }
                    b'\n' => {
                        // "." line after a bare-LF line: content (an empty line).
                        self.emit(b"\r\n");
                        self.state = State::LineStart { eligible: true };
                        i += 1;
                    }
                    b'\r' => {
                        self.emit(b"\r");
                        self.state = State::MidCr;
                        i += 1;
                    }
                    _ => {
                        self.emit(b"\r");
                        self.state = State::Mid;
                    }
                },
                State::Done(_) => {}
            }
        }
    }

    /// Takes the result. Call after `decode` reported [`DataEnd::Complete`];
    /// earlier it returns what was decoded so far.
    pub fn finish(self) -> Decoded {
        match self.over {
            None => Decoded::Message(self.buf),
            Some(head) => Decoded::Oversize(OversizeInfo {
                size: self.size,
                head: head.bytes,
            }),
        }
    }

    /// In state `Mid`: copies ordinary lines verbatim up to the next point
    /// that needs the state machine (a bare LF, a line starting with `.`, or
    /// the end of input). Returns the bytes consumed (at least one).
    fn copy_run(&mut self, rest: &[u8]) -> usize {
        for lf in memchr_iter(b'\n', rest) {
            let crlf = lf > 0 && rest.get(lf - 1) == Some(&b'\r');
            if !crlf {
                // Bare LF. (lf == 0 cannot follow a CR: that would be MidCr.)
                self.emit(rest.get(..lf).unwrap_or_default());
                self.bare_lf();
                return lf + 1;
            }
            if matches!(rest.get(lf + 1), Some(b'.') | None) {
                self.emit(rest.get(..=lf).unwrap_or_default());
                self.state = State::LineStart { eligible: true };
                return lf + 1;
            }
        }
        // No line end left: keep a trailing CR pending.
        if let Some((b'\r', body)) = rest.split_last() {
            self.emit(body);
            self.state = State::MidCr;
        } else {
            self.emit(rest);
        }
        rest.len()
    }

    fn bare_lf(&mut self) {
        match self.bare_lf {
            BareLf::Reject => self.state = State::Done(DataEnd::BareLf),
            BareLf::Normalize => {
                self.emit(b"\r\n");
                self.state = State::LineStart { eligible: false };
            }
        }
    }

    /// Appends content, or once over the cap only counts it (and fills the head).
    fn emit(&mut self, bytes: &[u8]) {
        let new_size = self.size.saturating_add(bytes.len());
        match &mut self.over {
            Some(head) => head.append(bytes),
            None if new_size <= self.max_size => {
                let needed = self.buf.len() + bytes.len();
                if needed > self.buf.capacity() {
                    // Grow geometrically but never past the cap.
                    let target = needed
                        .max(self.buf.capacity().saturating_mul(2))
                        .max(8 * 1024)
                        .min(self.max_size)
                        .max(needed);
                    self.buf.reserve_exact(target - self.buf.len());
                }
                self.buf.extend_from_slice(bytes);
            }
            None => {
                let mut head = Head {
                    bytes: Vec::new(),
                    done: false,
                };
                if let Some(first) = self.first.take() {
                    head.append(&first);
                }
                head.append(&self.buf);
                head.append(bytes);
                self.buf = Vec::new();
                self.over = Some(head);
            }
        }
        self.size = new_size;
    }
}

/// Dot-stuffs `content` and appends the terminator: the inverse of decoding
/// for content made of CRLF lines. Used by tests and the fuzz targets.
pub fn encode(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + content.len() / 64 + 5);
    let mut line_start = true;
    for &b in content {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    if !content.is_empty() && !content.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in one piece; returns (consumed, end, result).
    fn decode_whole(input: &[u8], mode: BareLf, max: usize) -> (usize, Option<DataEnd>, Decoded) {
        let mut d = DataDecoder::new(max, mode);
        let (n, end) = d.decode(input);
        (n, end, d.finish())
    }

    /// Decodes `input` fed in chunks of the given sizes (cycled).
    fn decode_split(
        input: &[u8],
        mode: BareLf,
        max: usize,
        sizes: &mut dyn FnMut() -> usize,
    ) -> (usize, Option<DataEnd>, Decoded) {
        let mut d = DataDecoder::new(max, mode);
        let mut pos = 0;
        let mut end = None;
        while pos < input.len() {
            let n = sizes().max(1).min(input.len() - pos);
            let chunk = &input[pos..pos + n];
            let (used, e) = d.decode(chunk);
            pos += used;
            if e.is_some() {
                end = e;
                break;
            }
            assert_eq!(
                used,
                chunk.len(),
                "a chunk is consumed whole unless data ended"
            );
        }
        (pos, end, d.finish())
    }

    fn message(input: &[u8], mode: BareLf) -> (usize, Option<DataEnd>, Vec<u8>) {
        match decode_whole(input, mode, usize::MAX) {
            (n, end, Decoded::Message(m)) => (n, end, m),
            other => panic!("unexpected {other:?}"),
        }
    }

    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn normal_termination_and_rest_is_not_consumed() {
        let input = b"Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n";
        let (n, end, m) = message(input, BareLf::Reject);
        assert_eq!(end, Some(DataEnd::Complete));
        assert_eq!(&input[n..], b"QUIT\r\n");
        assert_eq!(m, b"Subject: hi\r\n\r\nbody\r\n");
    }

    #[test]
    fn empty_message() {
        let (n, end, m) = message(b".\r\nNOOP\r\n", BareLf::Reject);
        assert_eq!((n, end, m), (3, Some(DataEnd::Complete), Vec::new()));
    }

    #[test]
    fn dot_unstuffing() {
        let (_, end, m) = message(
            b"..leading\r\n...\r\n..\r\nmid.dle\r\n.x\r\n.\r\n",
            BareLf::Reject,
        );
        assert_eq!(end, Some(DataEnd::Complete));
        assert_eq!(m, b".leading\r\n..\r\n.\r\nmid.dle\r\nx\r\n");
    }

    #[test]
    fn smuggling_sequences_never_end_data_in_normalize_mode() {
        for seq in [&b"\n.\n"[..], b"\n.\r\n", b"\r.\r", b"\r.\r\n", b"\r\n.\n"] {
            let mut input = b"Subject: x\r\n\r\nhello".to_vec();
            input.extend_from_slice(seq);
            input.extend_from_slice(
                b"MAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\n",
            );
            // Not terminated yet: everything is content.
            let (n, end, _) = message(&input, BareLf::Normalize);
            assert_eq!((n, end), (input.len(), None), "{seq:?} ended data");
            // A real terminator ends it and the smuggled commands are content.
            input.extend_from_slice(b"\r\n.\r\n");
            let (n, end, m) = message(&input, BareLf::Normalize);
            assert_eq!((n, end), (input.len(), Some(DataEnd::Complete)), "{seq:?}");
            assert!(memmem::find(&m, b"MAIL FROM:<evil@example.com>\r\n").is_some());
            assert!(memmem::find(&m, b"DATA\r\n").is_some());
        }
    }

    #[test]
    fn smuggling_sequences_in_reject_mode() {
        // Sequences with a bare LF are refused, the others are content.
        for (seq, bare) in [
            (&b"\n.\n"[..], true),
            (b"\n.\r\n", true),
            (b"\r.\r", false),
            (b"\r.\r\n", false),
            (b"\r\n.\n", true),
        ] {
            let mut input = b"hello".to_vec();
            input.extend_from_slice(seq);
            input.extend_from_slice(b"MAIL FROM:<evil@example.com>\r\n");
            let (_, end, _) = message(&input, BareLf::Reject);
            assert_eq!(
                end,
                if bare { Some(DataEnd::BareLf) } else { None },
                "{seq:?}"
            );
        }
    }

    #[test]
    fn exact_contents_of_smuggling_sequences() {
        let (_, _, m) = message(b"a\r.\rb\r\n.\r\n", BareLf::Reject);
        assert_eq!(m, b"a\r.\rb\r\n");
        let (_, _, m) = message(b"a\r.\r\nb\r\n.\r\n", BareLf::Reject);
        assert_eq!(m, b"a\r.\r\nb\r\n");
        // Normalize: bare LFs become CRLF, the dot line is unstuffed content.
        let (_, _, m) = message(b"a\n.\nb\r\n.\r\n", BareLf::Normalize);
        assert_eq!(m, b"a\r\n\r\nb\r\n");
        let (_, _, m) = message(b"a\n.\r\nb\r\n.\r\n", BareLf::Normalize);
        assert_eq!(m, b"a\r\n\r\nb\r\n");
        let (_, _, m) = message(b"a\r\n.\nb\r\n.\r\n", BareLf::Normalize);
        assert_eq!(m, b"a\r\n\r\nb\r\n");
    }

    #[test]
    fn line_after_bare_lf_line_is_not_eligible_but_the_next_is() {
        let (n, end, m) = message(b"a\n.\r\n.\r\nrest", BareLf::Normalize);
        assert_eq!(end, Some(DataEnd::Complete));
        assert_eq!(n, 8);
        assert_eq!(m, b"a\r\n\r\n");
    }

    #[test]
    fn bare_cr_is_content() {
        let (_, end, m) = message(b"a\rb\r\r\n\r\r\n.\r\n", BareLf::Reject);
        assert_eq!(end, Some(DataEnd::Complete));
        assert_eq!(m, b"a\rb\r\r\n\r\r\n");
        let (_, _, m) = message(b".\r.\r\n.\r\r\n.\r\n", BareLf::Reject);
        assert_eq!(m, b"\r.\r\n\r\r\n");
    }

    #[test]
    fn bare_lf_start_of_data() {
        let (_, end, _) = message(b"\n", BareLf::Reject);
        assert_eq!(end, Some(DataEnd::BareLf));
        let (_, end, m) = message(b"\n.\r\n.\r\n", BareLf::Normalize);
        assert_eq!(end, Some(DataEnd::Complete));
        assert_eq!(m, b"\r\n\r\n");
    }

    #[test]
    fn after_end_nothing_more_is_consumed() {
        let mut d = DataDecoder::new(100, BareLf::Reject);
        assert_eq!(d.decode(b"x\r\n.\r\nMORE"), (6, Some(DataEnd::Complete)));
        assert_eq!(d.decode(b"MORE"), (0, Some(DataEnd::Complete)));
        assert_eq!(d.end(), Some(DataEnd::Complete));
    }

    #[test]
    fn oversize_keeps_head_and_drains() {
        let mut input = b"From: a@example.com\r\nSubject: big\r\n\r\n".to_vec();
        let head_len = input.len();
        for _ in 0..1000 {
            input.extend_from_slice(b"0123456789012345678901234567890123456789\r\n");
        }
        let total = input.len();
        input.extend_from_slice(b".\r\nQUIT\r\n");
        let (n, end, d) = decode_whole(&input, BareLf::Reject, 1000);
        assert_eq!(end, Some(DataEnd::Complete));
        assert_eq!(&input[n..], b"QUIT\r\n");
        let Decoded::Oversize(info) = d else { panic!() };
        assert_eq!(info.size, total);
        assert_eq!(info.head, &input[..head_len]);
    }

    #[test]
    fn oversize_with_tiny_cap_still_collects_head() {
        let input = b"Subject: a header longer than the cap\r\n\r\nbody\r\n.\r\n";
        let (_, end, d) = decode_whole(input, BareLf::Reject, 5);
        assert_eq!(end, Some(DataEnd::Complete));
        let Decoded::Oversize(info) = d else { panic!() };
        assert_eq!(info.head, b"Subject: a header longer than the cap\r\n\r\n");
        assert_eq!(info.size, input.len() - 3);
    }

    #[test]
    fn head_is_capped_at_64k() {
        let mut input = Vec::new();
        for i in 0..5000 {
            input.extend_from_slice(format!("X-Header-{i}: some value here\r\n").as_bytes());
        }
        input.extend_from_slice(b"\r\nbody\r\n.\r\n");
        let (_, _, d) = decode_whole(&input, BareLf::Reject, 1024);
        let Decoded::Oversize(info) = d else { panic!() };
        assert_eq!(info.head.len(), HEAD_MAX);
        assert_eq!(info.head, &input[..HEAD_MAX]);
    }

    #[test]
    fn exact_cap_is_allowed() {
        let (_, _, d) = decode_whole(b"12345678\r\n.\r\n", BareLf::Reject, 10);
        assert_eq!(d, Decoded::Message(b"12345678\r\n".to_vec()));
        let (_, _, d) = decode_whole(b"123456789\r\n.\r\n", BareLf::Reject, 10);
        assert!(matches!(
            d,
            Decoded::Oversize(OversizeInfo { size: 11, .. })
        ));
    }

    #[test]
    fn buffer_capacity_never_exceeds_cap() {
        let mut d = DataDecoder::new(100_000, BareLf::Reject);
        let line = [b'x'; 998];
        for _ in 0..99 {
            d.decode(&line);
            d.decode(b"\r\n");
        }
        assert!(d.buf.capacity() <= 100_000);
    }

    fn tricky_corpus(rng: &mut XorShift, len: usize) -> Vec<u8> {
        const ALPHABET: &[u8] = b"\r\n.\r\n.aZ\r\n\r.";
        (0..len)
            .map(|_| ALPHABET[(rng.next() % ALPHABET.len() as u64) as usize])
            .collect()
    }

    #[test]
    fn byte_by_byte_and_random_splits_equal_whole() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for iter in 0..2000 {
            let len = (rng.next() % 300) as usize;
            let input = tricky_corpus(&mut rng, len);
            for mode in [BareLf::Normalize, BareLf::Reject] {
                let max = if iter % 3 == 0 { 40 } else { usize::MAX };
                let whole = decode_whole(&input, mode, max);
                let bytewise = decode_split(&input, mode, max, &mut || 1);
                assert_eq!(whole, bytewise, "input {input:?}");
                let mut split_rng = XorShift(rng.next() | 1);
                let split =
                    decode_split(&input, mode, max, &mut || (split_rng.next() % 17) as usize);
                assert_eq!(whole, split, "input {input:?}");
            }
        }
    }

    #[test]
    fn encode_then_decode_round_trips() {
        let mut rng = XorShift(42);
        for _ in 0..2000 {
            let len = (rng.next() % 200) as usize;
            // Content without bare LF: what decoding ever produces.
            let raw = tricky_corpus(&mut rng, len);
            let (_, _, content) =
                message(&[raw.as_slice(), b"\r\n.\r\n"].concat(), BareLf::Normalize);
            let wire = encode(&content);
            let (n, end, back) = message(&wire, BareLf::Reject);
            assert_eq!((n, end), (wire.len(), Some(DataEnd::Complete)), "{wire:?}");
            assert_eq!(back, content);
        }
    }

    /// Feeds `input` in 1000-byte pieces, draining at `at_least`: the
    /// drained pieces and the rest are the message, in order.
    fn decode_draining(input: &[u8], max: usize, at_least: usize) -> (Vec<Vec<u8>>, Decoded) {
        let mut d = DataDecoder::new(max, BareLf::Normalize);
        let mut drained = Vec::new();
        for chunk in input.chunks(1000) {
            d.decode(chunk);
            drained.extend(d.drain(at_least));
        }
        (drained, d.finish())
    }

    #[test]
    fn drained_content_and_the_rest_are_the_message() {
        let content: Vec<u8> = (0..2000)
            .flat_map(|i| format!("line {i} of the message\r\n").into_bytes())
            .chain(b".dot line\r\n".iter().copied())
            .collect();
        let (drained, rest) = decode_draining(&encode(&content), 1 << 20, 10_000);
        assert!(drained.len() >= 3, "drained {} times", drained.len());
        assert!(drained.iter().all(|d| d.len() >= 10_000));
        let Decoded::Message(rest) = rest else {
            panic!("not a message: {rest:?}");
        };
        let mut whole = drained.concat();
        whole.extend_from_slice(&rest);
        assert_eq!(whole, content);
    }

    #[test]
    fn an_oversize_message_after_draining_still_reports_its_header_block() {
        let mut content = b"Subject: big\r\nFrom: a@b.test\r\n\r\n".to_vec();
        content
            .extend((0..5000).flat_map(|_| b"0123456789012345678901234567890\r\n".iter().copied()));
        let (drained, rest) = decode_draining(&encode(&content), 100_000, 20_000);
        assert!(!drained.is_empty());
        let Decoded::Oversize(info) = rest else {
            panic!("not oversize: {rest:?}");
        };
        assert_eq!(info.size, content.len());
        assert_eq!(info.head, b"Subject: big\r\nFrom: a@b.test\r\n\r\n");
    }
}
