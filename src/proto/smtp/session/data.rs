//! DATA: the command that opens the data phase, and the phase itself —
//! content is streamed into the [`DataDecoder`] (dot-unstuffing, size cap,
//! bare-LF policy) until `<CR><LF>.<CR><LF>`, then handed to the caller as a
//! message or an oversize report.

use super::{Event, Session, State};
use crate::proto::smtp::data::{DataDecoder, DataEnd, Decoded};
use crate::proto::smtp::reply::Reply;

impl Session {
    /// DATA: needs an open transaction with at least one accepted recipient.
    pub(super) fn data(&mut self) -> Reply {
        let State::Mail(tx) = &self.state else {
            return Reply::new(503, Some((5, 5, 1)), "Error: need MAIL command");
        };
        if tx.envelope.recipients.is_empty() {
            return if tx.rcpt_attempted {
                Reply::new(554, Some((5, 5, 1)), "Error: no valid recipients")
            } else {
                Reply::new(503, Some((5, 5, 1)), "Error: need RCPT command")
            };
        }
        let State::Mail(tx) = std::mem::replace(&mut self.state, State::Closed) else {
            return Reply::new(503, Some((5, 5, 1)), "Error: need MAIL command");
        };
        let decoder = DataDecoder::new(self.config.max_message_size, self.config.bare_lf);
        self.state = State::Data {
            envelope: tx.envelope,
            decoder,
        };
        Reply::new(354, None, "End data with <CR><LF>.<CR><LF>")
    }

    /// After `Event::Message`: queue the final reply for that message and go
    /// back to reading commands. Ignored in any other state.
    pub fn message_done(&mut self, reply: Reply) {
        if let State::AwaitMessageDone { helo } = &mut self.state {
            let helo = std::mem::take(helo);
            reply.write_to(&mut self.output);
            self.state = State::Greeted { helo };
        }
    }

    /// In the data phase: the content decoded so far, once it is at least
    /// `at_least` bytes, for the caller to spool (see [`DataDecoder::drain`]).
    /// The message the session reports at the end is then only the rest.
    pub fn drain_data(&mut self, at_least: usize) -> Option<Vec<u8>> {
        match &mut self.state {
            State::Data { decoder, .. } => decoder.drain(at_least),
            _ => None,
        }
    }

    /// `feed` in the data phase with nothing buffered: decode straight from
    /// the caller's bytes, keeping only what follows the end of data.
    pub(super) fn feed_data(&mut self, input: &[u8]) {
        let State::Data { decoder, .. } = &mut self.state else {
            return;
        };
        if decoder.end().is_some() {
            self.input.extend_from_slice(input);
            return;
        }
        self.input.clear();
        self.pos = 0;
        self.scanned = 0;
        let (used, end) = decoder.decode(input);
        if end == Some(DataEnd::Complete) {
            self.input
                .extend_from_slice(input.get(used..).unwrap_or_default());
        }
    }

    /// Decodes buffered input; an event once the data phase ended.
    pub(super) fn run_data(&mut self) -> Option<Event> {
        let State::Data { decoder, .. } = &mut self.state else {
            return None;
        };
        let rest = self.input.get(self.pos..).unwrap_or_default();
        let (used, end) = decoder.decode(rest);
        self.pos += used;
        match end {
            None => Some(Event::NeedInput),
            Some(end) => Some(self.end_data(end)),
        }
    }

    /// Handles the end of DATA: a message, an oversize report or a bare-LF close.
    fn end_data(&mut self, end: DataEnd) -> Event {
        let State::Data { envelope, decoder } = std::mem::replace(&mut self.state, State::Closed)
        else {
            return Event::Close;
        };
        let helo = envelope.helo.clone();
        match (end, decoder.finish()) {
            (DataEnd::BareLf, _) => {
                self.state = State::Greeted { helo };
                self.bare_lf_close();
                Event::Close
            }
            (DataEnd::Complete, Decoded::Message(body)) => {
                self.state = State::AwaitMessageDone { helo };
                Event::Message(envelope, body)
            }
            (DataEnd::Complete, Decoded::Oversize(info)) => {
                self.state = State::Greeted { helo };
                let text = "Error: message size exceeds fixed maximum message size";
                Reply::new(552, Some((5, 3, 4)), text).write_to(&mut self.output);
                Event::Oversize(envelope, info)
            }
        }
    }
}
