//! Rewrites a `scheme://` prefix out of the HTTP/2 `:authority` of client requests.
//!
//! Why this exists: etcd's Go client 3.4 (etcdctl, and everything built on clientv3 3.4) dials
//! `--endpoints=http://127.0.0.1:2379` as the gRPC target `passthrough:///http://127.0.0.1:2379`,
//! and grpc-go then sends `:authority: http://127.0.0.1:2379`. Real etcd (Go's HTTP/2 server)
//! ignores it; the Rust `h2` crate under hyper/tonic refuses it as a malformed authority and resets
//! every such stream with PROTOCOL_ERROR before tonic sees the request, with no option to relax
//! that. So each accepted client connection is wrapped in [`AuthorityRewrite`], which sits between
//! the socket (or, later, the decrypted TLS stream) and h2 and re-encodes the client's header
//! blocks with the authority cut down to `host:port`. Everything else passes through untouched.
//!
//! How: the client→server byte stream is parsed into HTTP/2 frames. HEADERS and CONTINUATION
//! frames are gathered into a header block, HPACK-decoded (RFC 7541) with a decoder that follows
//! the client's dynamic table, fixed, and re-encoded with literals that are never added to the
//! server's dynamic table (static-table indices only). The server's decoder table thus stays empty
//! forever, so it needs no size updates and cannot drift from what the client's encoder believes.
//! Server→client bytes are not touched.
//!
//! A client sends the same `:authority` on every request of a connection (grpc-go and tonic
//! fix it per channel), so the connection's first header block decides: if its authority needs
//! no fix (every client but etcd's Go 3.4 ones), that block and everything after it pass through
//! byte for byte, with no parsing and no copy — decoding and re-encoding every request's
//! headers cost a few percent of the server's CPU under load. Only a connection whose first
//! block was fixed keeps being rewritten. Only the tokio world uses it: under `--cfg madsim` the
//! transport is madsim's, and no Go client is involved.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What every HTTP/2 client sends first (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_BYTES: usize = 9;
const FRAME_HEADERS: u8 = 0x1;
const FRAME_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
const PRIORITY_BYTES: usize = 5;

/// The frames we emit stay within SETTINGS_MAX_FRAME_SIZE's initial value, which every peer
/// accepts (h2 under tonic never advertises another).
const OUT_FRAME_PAYLOAD_BYTES_MAX: usize = 16_384;
/// Bound on one header block as the client sent it (all its HEADERS + CONTINUATION payloads).
/// gRPC metadata is a few hundred bytes; h2 under hyper limits the decoded list to 16 KiB anyway.
const HEADER_BLOCK_BYTES_MAX: usize = 256 * 1024;
/// Bound on a decoded header list (RFC 7541 sizes: name + value + 32 per field). Indexed fields
/// cost one byte each on the wire, so the decoded size needs its own bound.
const HEADER_LIST_BYTES_MAX: usize = 1024 * 1024;
/// The largest dynamic table the client's encoder may use: the server's
/// SETTINGS_HEADER_TABLE_SIZE. h2 under tonic never sends one, so RFC 9113's initial 4096 holds.
const CLIENT_TABLE_BYTES_MAX: usize = 4096;
/// RFC 7541 §4.1: an entry's size is its name and value lengths plus 32.
const ENTRY_OVERHEAD_BYTES: usize = 32;
/// Bytes read from the inner stream at a time.
const READ_CHUNK_BYTES: usize = 16 * 1024;

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// One header field of a decoded block. `never_indexed` keeps the client's "never indexed"
/// marking (sensitive values), which an intermediary must preserve (RFC 7541 §6.2.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderField {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
    pub never_indexed: bool,
}

impl HeaderField {
    fn size_bytes(&self) -> usize {
        self.name.len() + self.value.len() + ENTRY_OVERHEAD_BYTES
    }
}

/// RFC 7541 Appendix A, index 1..=61.
const STATIC_TABLE: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// The HPACK decoder's dynamic table (RFC 7541 §2.3.2): newest entry first.
#[derive(Debug)]
struct DynamicTable {
    entries: VecDeque<(Vec<u8>, Vec<u8>)>,
    size_bytes: usize,
    max_size_bytes: usize,
}

impl DynamicTable {
    fn insert(&mut self, name: Vec<u8>, value: Vec<u8>) {
        let entry_bytes = name.len() + value.len() + ENTRY_OVERHEAD_BYTES;
        // §4.4: an entry larger than the table empties it and is not added.
        if entry_bytes > self.max_size_bytes {
            self.entries.clear();
            self.size_bytes = 0;
            return;
        }
        while self.size_bytes + entry_bytes > self.max_size_bytes {
            self.evict_oldest();
        }
        self.size_bytes += entry_bytes;
        self.entries.push_front((name, value));
    }

    fn resize(&mut self, max_size_bytes: usize) {
        self.max_size_bytes = max_size_bytes;
        while self.size_bytes > self.max_size_bytes {
            self.evict_oldest();
        }
    }

    fn evict_oldest(&mut self) {
        if let Some((name, value)) = self.entries.pop_back() {
            self.size_bytes -= name.len() + value.len() + ENTRY_OVERHEAD_BYTES;
        }
    }
}

/// An HPACK decoder that follows one client's encoder.
#[derive(Debug)]
pub struct Decoder {
    table: DynamicTable,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            table: DynamicTable { entries: VecDeque::new(), size_bytes: 0, max_size_bytes: CLIENT_TABLE_BYTES_MAX },
        }
    }
}

impl Decoder {
    /// Decodes one complete header block. Errors are HPACK COMPRESSION_ERRORs: the connection
    /// cannot continue after one, since the table state is then unknown.
    pub fn decode(&mut self, block: &[u8]) -> io::Result<Vec<HeaderField>> {
        let mut fields = Vec::new();
        let mut list_bytes = 0usize;
        let mut pos = 0usize;
        while pos < block.len() {
            let first = block[pos];
            let field = if first & 0x80 != 0 {
                let index = decode_int(block, &mut pos, 7)?;
                let (name, value) = self.lookup(index)?;
                HeaderField { name, value, never_indexed: false }
            } else if first & 0xc0 == 0x40 {
                let field = self.decode_literal(block, &mut pos, 6, false)?;
                self.table.insert(field.name.clone(), field.value.clone());
                field
            } else if first & 0xe0 == 0x20 {
                // §4.2: size updates come only at the start of a block.
                if !fields.is_empty() {
                    return Err(invalid("hpack: dynamic table size update after a header field"));
                }
                let max_size_bytes = decode_int(block, &mut pos, 5)?;
                if max_size_bytes > CLIENT_TABLE_BYTES_MAX {
                    return Err(invalid(format!(
                        "hpack: dynamic table size update to {max_size_bytes} over {CLIENT_TABLE_BYTES_MAX}"
                    )));
                }
                self.table.resize(max_size_bytes);
                continue;
            } else {
                // 0000xxxx without indexing, 0001xxxx never indexed.
                self.decode_literal(block, &mut pos, 4, first & 0x10 != 0)?
            };
            list_bytes += field.size_bytes();
            if list_bytes > HEADER_LIST_BYTES_MAX {
                return Err(invalid(format!("hpack: header list over {HEADER_LIST_BYTES_MAX} bytes")));
            }
            fields.push(field);
        }
        Ok(fields)
    }

    fn decode_literal(
        &self,
        block: &[u8],
        pos: &mut usize,
        prefix_bits: u8,
        never_indexed: bool,
    ) -> io::Result<HeaderField> {
        let name_index = decode_int(block, pos, prefix_bits)?;
        let name = if name_index == 0 { decode_string(block, pos)? } else { self.lookup(name_index)?.0 };
        let value = decode_string(block, pos)?;
        Ok(HeaderField { name, value, never_indexed })
    }

    fn lookup(&self, index: usize) -> io::Result<(Vec<u8>, Vec<u8>)> {
        if index == 0 {
            return Err(invalid("hpack: index 0"));
        }
        if let Some((name, value)) = STATIC_TABLE.get(index - 1) {
            return Ok((name.as_bytes().to_vec(), value.as_bytes().to_vec()));
        }
        self.table
            .entries
            .get(index - 1 - STATIC_TABLE.len())
            .cloned()
            .ok_or_else(|| invalid(format!("hpack: index {index} beyond the tables")))
    }
}

/// RFC 7541 §5.1 integer with an N-bit prefix. Values past 2^28 are refused: nothing in a
/// bounded header block needs them, and it keeps the shift from overflowing.
fn decode_int(block: &[u8], pos: &mut usize, prefix_bits: u8) -> io::Result<usize> {
    let mask = ((1u16 << prefix_bits) - 1) as u8;
    let first = block[*pos] & mask;
    *pos += 1;
    if first < mask {
        return Ok(usize::from(first));
    }
    let mut value = usize::from(mask);
    let mut shift = 0u32;
    loop {
        let byte = *block.get(*pos).ok_or_else(|| invalid("hpack: truncated integer"))?;
        *pos += 1;
        value += usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
        if shift > 21 {
            return Err(invalid("hpack: integer too large"));
        }
    }
}

fn encode_int(out: &mut Vec<u8>, first_bits: u8, prefix_bits: u8, value: usize) {
    let mask = (1usize << prefix_bits) - 1;
    if value < mask {
        out.push(first_bits | value as u8);
        return;
    }
    out.push(first_bits | mask as u8);
    let mut rest = value - mask;
    while rest >= 0x80 {
        out.push((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// RFC 7541 §5.2 string literal, raw or Huffman-coded.
fn decode_string(block: &[u8], pos: &mut usize) -> io::Result<Vec<u8>> {
    let first = *block.get(*pos).ok_or_else(|| invalid("hpack: truncated string"))?;
    let length = decode_int(block, pos, 7)?;
    let end = pos.checked_add(length).filter(|end| *end <= block.len());
    let end = end.ok_or_else(|| invalid("hpack: string longer than its block"))?;
    let raw = &block[*pos..end];
    *pos = end;
    if first & 0x80 != 0 {
        huffman_decode(raw)
    } else {
        Ok(raw.to_vec())
    }
}

/// Bit lengths of the HPACK Huffman code (RFC 7541 Appendix B) for symbols 0..=256 (256 = EOS).
/// The code is canonical: codes of one length are consecutive in symbol order, and shorter codes
/// come first, so the lengths determine every code.
const HUFFMAN_CODE_BITS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28,
    28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12,
    10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6,
    5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22,
    22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22, 21, 20,
    22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28,
    27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28,
    27, 27, 27, 27, 27, 26, 30,
];
const HUFFMAN_EOS: u16 = 256;
const HUFFMAN_LONGEST_BITS: usize = 30;

/// The canonical code's decoding tables: for each length, its first code, how many codes have
/// that length, and where their symbols start in `symbols` (sorted by length, then symbol).
struct HuffmanTable {
    first_code: [u32; HUFFMAN_LONGEST_BITS + 1],
    count: [u32; HUFFMAN_LONGEST_BITS + 1],
    offset: [usize; HUFFMAN_LONGEST_BITS + 1],
    symbols: Vec<u16>,
}

fn huffman_table() -> &'static HuffmanTable {
    static TABLE: OnceLock<HuffmanTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut count = [0u32; HUFFMAN_LONGEST_BITS + 1];
        for bits in HUFFMAN_CODE_BITS {
            count[usize::from(bits)] += 1;
        }
        let mut symbols: Vec<u16> = (0..=HUFFMAN_EOS).collect();
        symbols.sort_by_key(|symbol| (HUFFMAN_CODE_BITS[usize::from(*symbol)], *symbol));
        let (mut first_code, mut offset) = ([0u32; HUFFMAN_LONGEST_BITS + 1], [0usize; HUFFMAN_LONGEST_BITS + 1]);
        let mut code = 0u32;
        for bits in 1..=HUFFMAN_LONGEST_BITS {
            code = (code + count[bits - 1]) << 1;
            first_code[bits] = code;
            offset[bits] = offset[bits - 1] + count[bits - 1] as usize;
        }
        HuffmanTable { first_code, count, offset, symbols }
    })
}

fn huffman_decode(input: &[u8]) -> io::Result<Vec<u8>> {
    let table = huffman_table();
    let mut out = Vec::with_capacity(input.len() * 8 / 5);
    let (mut code, mut bits) = (0u32, 0usize);
    for byte in input {
        for shift in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> shift) & 1);
            bits += 1;
            if bits > HUFFMAN_LONGEST_BITS {
                return Err(invalid("hpack: invalid huffman code"));
            }
            let rank = code.wrapping_sub(table.first_code[bits]);
            if code >= table.first_code[bits] && rank < table.count[bits] {
                let symbol = table.symbols[table.offset[bits] + rank as usize];
                if symbol == HUFFMAN_EOS {
                    return Err(invalid("hpack: huffman EOS inside a string"));
                }
                out.push(symbol as u8);
                (code, bits) = (0, 0);
            }
        }
    }
    // §5.2: padding is fewer than 8 bits, all ones (a prefix of EOS).
    if bits >= 8 || code != (1u32 << bits) - 1 {
        return Err(invalid("hpack: invalid huffman padding"));
    }
    Ok(out)
}

/// Encodes fields without touching the receiver's dynamic table: each field is an exact
/// static-table match or a literal "without indexing" / "never indexed", with a static-table
/// name where there is one. Values are sent raw (no Huffman): simpler, and always valid.
pub fn encode(fields: &[HeaderField]) -> Vec<u8> {
    let mut out = Vec::new();
    for field in fields {
        let name_index = STATIC_TABLE.iter().position(|(name, _)| name.as_bytes() == field.name.as_slice());
        let exact_index = STATIC_TABLE
            .iter()
            .position(|(name, value)| name.as_bytes() == field.name.as_slice() && value.as_bytes() == field.value);
        match exact_index {
            Some(index) if !field.never_indexed => encode_int(&mut out, 0x80, 7, index + 1),
            _ => {
                let first_bits = if field.never_indexed { 0x10 } else { 0x00 };
                match name_index {
                    Some(index) => encode_int(&mut out, first_bits, 4, index + 1),
                    None => {
                        out.push(first_bits);
                        encode_int(&mut out, 0x00, 7, field.name.len());
                        out.extend_from_slice(&field.name);
                    }
                }
                encode_int(&mut out, 0x00, 7, field.value.len());
                out.extend_from_slice(&field.value);
            }
        }
    }
    out
}

/// `http://127.0.0.1:2379` → `127.0.0.1:2379`; `None` when the value has no `scheme://`
/// (a valid authority is left as it is). Anything after the host part (a path) goes too.
fn strip_scheme(authority: &[u8]) -> Option<&[u8]> {
    let separator = authority.windows(3).position(|w| w == b"://")?;
    let scheme = &authority[..separator];
    let is_scheme = scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'));
    if !is_scheme {
        return None;
    }
    let rest = &authority[separator + 3..];
    let host_end = rest.iter().position(|c| *c == b'/').unwrap_or(rest.len());
    Some(&rest[..host_end])
}

/// Cuts a `scheme://` prefix out of `:authority`. An authority left empty (`unix:///path`) is
/// dropped: HTTP/2 allows a request without one. Returns whether anything changed.
pub fn fix_authority(fields: &mut Vec<HeaderField>) -> bool {
    let mut changed = false;
    fields.retain_mut(|field| {
        if field.name != b":authority" {
            return true;
        }
        let Some(host) = strip_scheme(&field.value) else { return true };
        tracing::trace!(from = %String::from_utf8_lossy(&field.value), to = %String::from_utf8_lossy(host),
            "rewriting a scheme-prefixed :authority");
        field.value = host.to_vec();
        changed = true;
        !field.value.is_empty()
    });
    changed
}

#[derive(Debug)]
enum State {
    /// Inside the client preface; `matched_bytes` of it seen so far.
    Preface { matched_bytes: usize },
    /// Not HTTP/2 with prior knowledge: bytes pass through and the server answers as it does.
    NotHttp2,
    /// Waiting for the next frame's 9-byte header.
    FrameHeader,
    /// Inside a frame that passes through unchanged.
    Payload { remaining_bytes: usize },
    /// The first header block needed no fix: the rest of the connection passes through.
    Passthrough,
}

/// A header block whose HEADERS frame has arrived, waiting for its END_HEADERS.
#[derive(Debug)]
struct PendingBlock {
    stream_id: u32,
    end_stream: bool,
    priority: Option<[u8; PRIORITY_BYTES]>,
    block: Vec<u8>,
    /// The block's frames as received, kept until the first block decides (see the module docs).
    raw: Vec<u8>,
}

/// The sans-IO part: client→server bytes in, the same bytes out except for re-encoded header
/// blocks. It buffers at most one HEADERS/CONTINUATION frame plus one header block.
#[derive(Debug)]
pub struct ClientStreamRewriter {
    state: State,
    decoder: Decoder,
    pending: Option<PendingBlock>,
    /// A header block of this connection was re-encoded: all later ones must be too.
    rewriting: bool,
}

impl Default for ClientStreamRewriter {
    fn default() -> Self {
        ClientStreamRewriter {
            state: State::Preface { matched_bytes: 0 },
            decoder: Decoder::default(),
            pending: None,
            rewriting: false,
        }
    }
}

impl ClientStreamRewriter {
    /// Every byte from here on passes through unchanged (not HTTP/2, or a connection whose
    /// first header block needed no fix).
    pub fn passes_through(&self) -> bool {
        matches!(self.state, State::NotHttp2 | State::Passthrough)
    }

    /// Consumes what it can of `input` (leaving an incomplete frame header or header frame
    /// there) and appends the bytes for the server to `output`. An error is a connection error:
    /// the stream is not HTTP/2 the server could accept either.
    pub fn process(&mut self, input: &mut BytesMut, output: &mut BytesMut) -> io::Result<()> {
        loop {
            match self.state {
                State::Preface { matched_bytes } => {
                    let expected = &PREFACE[matched_bytes..];
                    let n = expected.len().min(input.len());
                    if n == 0 {
                        return Ok(());
                    }
                    if input[..n] != expected[..n] {
                        self.state = State::NotHttp2;
                        continue;
                    }
                    output.extend_from_slice(&input.split_to(n));
                    self.state = if matched_bytes + n == PREFACE.len() {
                        State::FrameHeader
                    } else {
                        State::Preface { matched_bytes: matched_bytes + n }
                    };
                }
                State::NotHttp2 | State::Passthrough => {
                    output.extend_from_slice(&input.split());
                    return Ok(());
                }
                State::Payload { remaining_bytes } => {
                    let n = remaining_bytes.min(input.len());
                    if n == 0 {
                        return Ok(());
                    }
                    output.extend_from_slice(&input.split_to(n));
                    self.state = if remaining_bytes == n {
                        State::FrameHeader
                    } else {
                        State::Payload { remaining_bytes: remaining_bytes - n }
                    };
                }
                State::FrameHeader => {
                    if input.len() < FRAME_HEADER_BYTES {
                        return Ok(());
                    }
                    let length = usize::from(input[0]) << 16 | usize::from(input[1]) << 8 | usize::from(input[2]);
                    let (kind, flags) = (input[3], input[4]);
                    let stream_id = u32::from_be_bytes([input[5], input[6], input[7], input[8]]) & 0x7fff_ffff;
                    if let Some(pending) = &self.pending {
                        if kind != FRAME_CONTINUATION || stream_id != pending.stream_id {
                            return Err(invalid(format!(
                                "http2: frame type {kind} on stream {stream_id} inside the header block of stream {}",
                                pending.stream_id
                            )));
                        }
                    }
                    if kind != FRAME_HEADERS && kind != FRAME_CONTINUATION {
                        output.extend_from_slice(&input.split_to(FRAME_HEADER_BYTES));
                        self.state =
                            if length == 0 { State::FrameHeader } else { State::Payload { remaining_bytes: length } };
                        continue;
                    }
                    if length > HEADER_BLOCK_BYTES_MAX {
                        return Err(invalid(format!("http2: header frame of {length} bytes")));
                    }
                    if input.len() < FRAME_HEADER_BYTES + length {
                        return Ok(());
                    }
                    let frame = input.split_to(FRAME_HEADER_BYTES + length);
                    self.on_header_frame(kind, flags, stream_id, &frame, output)?;
                }
            }
        }
    }

    fn on_header_frame(
        &mut self,
        kind: u8,
        flags: u8,
        stream_id: u32,
        frame: &[u8],
        output: &mut BytesMut,
    ) -> io::Result<()> {
        let payload = &frame[FRAME_HEADER_BYTES..];
        if kind == FRAME_HEADERS {
            if stream_id == 0 {
                return Err(invalid("http2: HEADERS on stream 0"));
            }
            let mut pos = 0;
            let mut padding_bytes = 0;
            if flags & FLAG_PADDED != 0 {
                padding_bytes = usize::from(*payload.first().ok_or_else(|| invalid("http2: HEADERS too short"))?);
                pos = 1;
            }
            let mut priority = None;
            if flags & FLAG_PRIORITY != 0 {
                let bytes =
                    payload.get(pos..pos + PRIORITY_BYTES).ok_or_else(|| invalid("http2: HEADERS too short"))?;
                priority = Some(<[u8; PRIORITY_BYTES]>::try_from(bytes).expect("slice of PRIORITY_BYTES"));
                pos += PRIORITY_BYTES;
            }
            let end = payload.len().checked_sub(padding_bytes).filter(|end| *end >= pos);
            let end = end.ok_or_else(|| invalid("http2: HEADERS padding longer than its payload"))?;
            self.pending = Some(PendingBlock {
                stream_id,
                end_stream: flags & FLAG_END_STREAM != 0,
                priority,
                block: payload[pos..end].to_vec(),
                raw: Vec::new(),
            });
        } else {
            let pending = self.pending.as_mut().ok_or_else(|| invalid("http2: CONTINUATION without HEADERS"))?;
            if pending.block.len() + payload.len() > HEADER_BLOCK_BYTES_MAX {
                return Err(invalid(format!("http2: header block over {HEADER_BLOCK_BYTES_MAX} bytes")));
            }
            pending.block.extend_from_slice(payload);
        }
        if !self.rewriting {
            self.pending.as_mut().expect("a header block is pending").raw.extend_from_slice(frame);
        }
        if flags & FLAG_END_HEADERS == 0 {
            return Ok(());
        }
        let pending = self.pending.take().expect("a header block is pending");
        let mut fields = self.decoder.decode(&pending.block)?;
        if !fix_authority(&mut fields) && !self.rewriting {
            // The first block is fine as sent: so is the connection (see the module docs).
            output.extend_from_slice(&pending.raw);
            self.state = State::Passthrough;
            return Ok(());
        }
        self.rewriting = true;
        write_header_frames(output, &pending, &encode(&fields));
        Ok(())
    }
}

/// A HEADERS frame (flags and priority as the client sent them, no padding) and as many
/// CONTINUATIONs as the block needs.
fn write_header_frames(output: &mut BytesMut, pending: &PendingBlock, block: &[u8]) {
    let priority: &[u8] = pending.priority.as_ref().map_or(&[], |p| p.as_slice());
    let first_bytes = block.len().min(OUT_FRAME_PAYLOAD_BYTES_MAX - priority.len());
    let (first, mut rest) = block.split_at(first_bytes);
    let mut flags = 0;
    if pending.end_stream {
        flags |= FLAG_END_STREAM;
    }
    if !priority.is_empty() {
        flags |= FLAG_PRIORITY;
    }
    if rest.is_empty() {
        flags |= FLAG_END_HEADERS;
    }
    write_frame_header(output, priority.len() + first.len(), FRAME_HEADERS, flags, pending.stream_id);
    output.extend_from_slice(priority);
    output.extend_from_slice(first);
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at(rest.len().min(OUT_FRAME_PAYLOAD_BYTES_MAX));
        let flags = if after.is_empty() { FLAG_END_HEADERS } else { 0 };
        write_frame_header(output, chunk.len(), FRAME_CONTINUATION, flags, pending.stream_id);
        output.extend_from_slice(chunk);
        rest = after;
    }
}

fn write_frame_header(output: &mut BytesMut, length: usize, kind: u8, flags: u8, stream_id: u32) {
    output.put_uint(length as u64, 3);
    output.put_u8(kind);
    output.put_u8(flags);
    output.put_u32(stream_id);
}

/// An accepted client connection whose client→server HTTP/2 stream goes through
/// [`ClientStreamRewriter`]; writes pass straight to the inner stream.
pub struct AuthorityRewrite<T> {
    inner: T,
    rewriter: ClientStreamRewriter,
    /// Bytes read but not yet processed (an incomplete frame header or header frame).
    input: BytesMut,
    /// Processed bytes not yet handed to the reader. Refilled only once empty.
    output: BytesMut,
    read_chunk: Box<[u8]>,
    eof: bool,
}

impl<T> AuthorityRewrite<T> {
    pub fn new(inner: T) -> Self {
        AuthorityRewrite {
            inner,
            rewriter: ClientStreamRewriter::default(),
            input: BytesMut::new(),
            output: BytesMut::new(),
            read_chunk: vec![0; READ_CHUNK_BYTES].into_boxed_slice(),
            eof: false,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for AuthorityRewrite<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.output.is_empty() {
                let n = buf.remaining().min(this.output.len());
                buf.put_slice(&this.output.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                // A frame cut short by the client's close is the server's to notice: it sees EOF.
                return Poll::Ready(Ok(()));
            }
            if this.rewriter.passes_through() && this.input.is_empty() {
                // Nothing to look at any more: straight into the reader's buffer.
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let mut chunk = ReadBuf::new(&mut this.read_chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut chunk) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) if chunk.filled().is_empty() => this.eof = true,
                Poll::Ready(Ok(())) => {
                    this.input.extend_from_slice(chunk.filled());
                    if let Err(e) = this.rewriter.process(&mut this.input, &mut this.output) {
                        tracing::debug!("closing a client connection: {e}");
                        return Poll::Ready(Err(e));
                    }
                }
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for AuthorityRewrite<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<T: tonic::transport::server::Connected> tonic::transport::server::Connected for AuthorityRewrite<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
    }

    fn field(name: &str, value: &str) -> HeaderField {
        HeaderField { name: name.into(), value: value.into(), never_indexed: false }
    }

    fn grpc_go_request(path: &str, authority: &str) -> Vec<HeaderField> {
        vec![
            field(":method", "POST"),
            field(":scheme", "http"),
            field(":path", path),
            field(":authority", authority),
            field("content-type", "application/grpc"),
            field("user-agent", "grpc-go/1.26.0"),
            field("te", "trailers"),
        ]
    }

    // Three header blocks from one independent HPACK encoder (Python's `hpack`, Huffman on), in
    // order: grpc-go's headers for a Put; the same for a Range, which reuses the dynamic table
    // (`c2 c1 c0 bf` index entries the first block added); then a size update to 64 bytes, the
    // authority added again, and a never-indexed `authorization`.
    const PUT_BLOCK: &str =
        "8386448f60a924882d9dcb6571af9b8b1aed4f418f9d29aee30c044eae05c0b86e09975f5f8b1d75d0620d263d4c4d65\
        647a8a9acac8b4c7602b89c5c14082497f864d833505b11f";
    const RANGE_BLOCK: &str = "8386449060a924882d9dcb6571af9b8b1b4754c5c2c1c0bf";
    const RESIZED_BLOCK: &str = "3f2183418f9d29aee30c044eae05c0b86e09975f1f088941496152b24fd4b57f";

    #[test]
    fn huffman_strings_decode_as_in_rfc_7541_appendix_c4() {
        assert_eq!(huffman_decode(&hex("f1e3c2e5f23a6ba0ab90f4ff")).unwrap(), b"www.example.com");
        assert_eq!(huffman_decode(&hex("a8eb10649cbf")).unwrap(), b"no-cache");
        assert_eq!(huffman_decode(&hex("25a849e95bb8e8b4bf")).unwrap(), b"custom-value");
        // Eight bits of padding, padding that is not all ones, and a whole EOS are all refused.
        assert!(huffman_decode(&hex("f1e3c2e5f23a6ba0ab90f4ffff")).is_err());
        assert!(huffman_decode(&hex("f1e3c2e5f23a6ba0ab90f4fe")).is_err());
        assert!(huffman_decode(&hex("ffffffff")).is_err());
    }

    #[test]
    fn a_decoder_follows_the_clients_dynamic_table_across_requests_and_a_size_update() {
        let mut decoder = Decoder::default();
        let put = decoder.decode(&hex(PUT_BLOCK)).unwrap();
        assert_eq!(put, grpc_go_request("/etcdserverpb.KV/Put", "http://127.0.0.1:2379"));
        let range = decoder.decode(&hex(RANGE_BLOCK)).unwrap();
        assert_eq!(range, grpc_go_request("/etcdserverpb.KV/Range", "http://127.0.0.1:2379"));
        let resized = decoder.decode(&hex(RESIZED_BLOCK)).unwrap();
        let secret = HeaderField { never_indexed: true, ..field("authorization", "secret-token") };
        assert_eq!(resized, vec![field(":method", "POST"), field(":authority", "http://127.0.0.1:2379"), secret]);
        assert_eq!(decoder.table.max_size_bytes, 64);
        assert_eq!(decoder.table.entries.len(), 1, "only the re-added authority fits in 64 bytes");
    }

    #[test]
    fn bad_hpack_is_refused() {
        // A size update above the server's 4096-byte SETTINGS_HEADER_TABLE_SIZE.
        let mut too_big = Vec::new();
        encode_int(&mut too_big, 0x20, 5, 4097);
        assert!(Decoder::default().decode(&too_big).is_err());
        // A size update after a field.
        assert!(Decoder::default().decode(&hex("823f21")).is_err());
        // An index past both tables, index 0, a string longer than the block, a runaway integer.
        assert!(Decoder::default().decode(&hex("be")).is_err());
        assert!(Decoder::default().decode(&hex("80")).is_err());
        assert!(Decoder::default().decode(&hex("400a61")).is_err());
        assert!(Decoder::default().decode(&hex("ffffffffffff01")).is_err());
    }

    #[test]
    fn only_a_scheme_prefixed_authority_changes() {
        let fixed = |value: &str| {
            let mut fields = vec![field(":authority", value), field("x-other", "http://kept")];
            let changed = fix_authority(&mut fields);
            (changed, fields.iter().map(|f| String::from_utf8(f.value.clone()).unwrap()).collect::<Vec<_>>())
        };
        assert_eq!(fixed("http://127.0.0.1:2379"), (true, vec!["127.0.0.1:2379".into(), "http://kept".into()]));
        assert_eq!(fixed("https://node-1:2379/some/path"), (true, vec!["node-1:2379".into(), "http://kept".into()]));
        assert_eq!(fixed("127.0.0.1:2379"), (false, vec!["127.0.0.1:2379".into(), "http://kept".into()]));
        assert_eq!(fixed("unix:///tmp/etcd.sock"), (true, vec!["http://kept".into()]), "an empty authority goes");
    }

    #[test]
    fn re_encoded_blocks_never_touch_the_servers_dynamic_table() {
        let mut fields = grpc_go_request("/etcdserverpb.KV/Put", "http://127.0.0.1:2379");
        fields.push(HeaderField { never_indexed: true, ..field("authorization", "secret-token") });
        fix_authority(&mut fields);
        let block = encode(&fields);
        let mut server = Decoder::default();
        assert_eq!(server.decode(&block).unwrap(), fields);
        assert!(server.table.entries.is_empty());
        assert_eq!(fields[3].value, b"127.0.0.1:2379");
        // `:method: POST` is static index 3; the never-indexed field keeps its marking.
        assert_eq!(block[0], 0x83);
        assert!(block.windows(2).any(|w| w == [0x1f, 0x08]), "authorization: never indexed, static name 23");
    }

    struct Frame {
        kind: u8,
        flags: u8,
        stream_id: u32,
        payload: Vec<u8>,
    }

    fn frame_bytes(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        write_frame_header(&mut out, payload.len(), kind, flags, stream_id);
        out.extend_from_slice(payload);
        out.to_vec()
    }

    fn parse_frames(mut bytes: &[u8]) -> Vec<Frame> {
        let mut frames = Vec::new();
        while !bytes.is_empty() {
            let length = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
            let stream_id = u32::from_be_bytes(bytes[5..9].try_into().unwrap());
            let payload = bytes[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + length].to_vec();
            frames.push(Frame { kind: bytes[3], flags: bytes[4], stream_id, payload });
            bytes = &bytes[FRAME_HEADER_BYTES + length..];
        }
        frames
    }

    /// Feeds `input` to a fresh rewriter in pieces of `piece_bytes`, as a socket might deliver it.
    fn rewrite(input: &[u8], piece_bytes: usize) -> io::Result<Vec<u8>> {
        let mut rewriter = ClientStreamRewriter::default();
        let (mut pending, mut output) = (BytesMut::new(), BytesMut::new());
        for piece in input.chunks(piece_bytes) {
            pending.extend_from_slice(piece);
            rewriter.process(&mut pending, &mut output)?;
        }
        assert!(pending.is_empty(), "everything complete was consumed");
        Ok(output.to_vec())
    }

    #[test]
    fn a_connection_keeps_every_frame_but_gets_its_header_blocks_fixed() {
        let put = hex(PUT_BLOCK);
        let settings = frame_bytes(0x4, 0, 0, &[0, 0x3, 0, 0, 0, 100]);
        // Stream 1: HEADERS padded and with a priority, its block split over a CONTINUATION.
        let mut headers_payload = vec![3];
        headers_payload.extend_from_slice(&[0, 0, 0, 0, 15]);
        headers_payload.extend_from_slice(&put[..30]);
        headers_payload.extend_from_slice(&[0, 0, 0]);
        let data = frame_bytes(0x0, FLAG_END_STREAM, 1, b"\0\0\0\0\x05hello");
        let mut input = PREFACE.to_vec();
        input.extend(settings.clone());
        input.extend(frame_bytes(FRAME_HEADERS, FLAG_PADDED | FLAG_PRIORITY, 1, &headers_payload));
        input.extend(frame_bytes(FRAME_CONTINUATION, FLAG_END_HEADERS, 1, &put[30..]));
        input.extend(data.clone());
        // Stream 3: a block that leans on the dynamic table the first one filled.
        input.extend(frame_bytes(FRAME_HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 3, &hex(RANGE_BLOCK)));

        for piece_bytes in [1, 7, 4096] {
            let output = rewrite(&input, piece_bytes).unwrap();
            assert_eq!(&output[..PREFACE.len()], PREFACE);
            let frames = parse_frames(&output[PREFACE.len()..]);
            assert_eq!(frames.len(), 4, "the CONTINUATION folded into one HEADERS");
            assert_eq!(frame_bytes(frames[0].kind, frames[0].flags, 0, &frames[0].payload), settings);
            let mut server = Decoder::default();

            let first = &frames[1];
            assert_eq!(
                (first.kind, first.flags, first.stream_id),
                (FRAME_HEADERS, FLAG_PRIORITY | FLAG_END_HEADERS, 1)
            );
            assert_eq!(&first.payload[..PRIORITY_BYTES], &[0, 0, 0, 0, 15]);
            let fields = server.decode(&first.payload[PRIORITY_BYTES..]).unwrap();
            assert_eq!(fields, grpc_go_request("/etcdserverpb.KV/Put", "127.0.0.1:2379"));

            let second = &frames[2];
            assert_eq!(frame_bytes(second.kind, second.flags, second.stream_id, &second.payload), data);

            let third = &frames[3];
            assert_eq!(
                (third.kind, third.flags, third.stream_id),
                (FRAME_HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 3)
            );
            let fields = server.decode(&third.payload).unwrap();
            assert_eq!(fields, grpc_go_request("/etcdserverpb.KV/Range", "127.0.0.1:2379"));
            assert!(server.table.entries.is_empty());
        }
    }

    #[test]
    fn a_connection_whose_first_authority_is_fine_passes_through_untouched() {
        let fine = encode(&grpc_go_request("/etcdserverpb.KV/Put", "127.0.0.1:2379"));
        let mut input = PREFACE.to_vec();
        input.extend(frame_bytes(0x4, 0, 0, &[0, 0x3, 0, 0, 0, 100]));
        // The first block, split over a CONTINUATION, decides for the whole connection.
        input.extend(frame_bytes(FRAME_HEADERS, 0, 1, &fine[..7]));
        input.extend(frame_bytes(FRAME_CONTINUATION, FLAG_END_HEADERS, 1, &fine[7..]));
        input.extend(frame_bytes(0x0, FLAG_END_STREAM, 1, b"\0\0\0\0\x05hello"));
        // Later blocks are not even parsed: a client keeps one authority per connection.
        input.extend(frame_bytes(FRAME_HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 3, &hex(RANGE_BLOCK)));
        for piece_bytes in [1, 7, 4096] {
            assert_eq!(rewrite(&input, piece_bytes).unwrap(), input, "in pieces of {piece_bytes} bytes");
        }
        let mut rewriter = ClientStreamRewriter::default();
        let (mut from_client, mut to_server) = (BytesMut::from(&input[..]), BytesMut::new());
        rewriter.process(&mut from_client, &mut to_server).unwrap();
        assert!(rewriter.passes_through());
    }

    #[test]
    fn a_block_over_one_frame_goes_out_as_headers_and_continuations() {
        let mut fields = grpc_go_request("/etcdserverpb.KV/Put", "http://127.0.0.1:2379");
        fields.push(field("x-large", &"v".repeat(40_000)));
        let block = encode(&fields);
        let mut input = PREFACE.to_vec();
        let (first, rest) = block.split_at(10_000);
        input.extend(frame_bytes(FRAME_HEADERS, 0, 5, first));
        for (i, chunk) in rest.chunks(10_000).enumerate() {
            let last = (i + 1) * 10_000 >= rest.len();
            input.extend(frame_bytes(FRAME_CONTINUATION, if last { FLAG_END_HEADERS } else { 0 }, 5, chunk));
        }
        let output = rewrite(&input, 1500).unwrap();
        let frames = parse_frames(&output[PREFACE.len()..]);
        assert_eq!(frames.iter().map(|f| f.kind).collect::<Vec<_>>(), [1, 9, 9]);
        assert!(frames.iter().all(|f| f.payload.len() <= OUT_FRAME_PAYLOAD_BYTES_MAX && f.stream_id == 5));
        assert_eq!(frames.iter().map(|f| f.flags & FLAG_END_HEADERS).collect::<Vec<_>>(), [0, 0, FLAG_END_HEADERS]);
        let joined: Vec<u8> = frames.iter().flat_map(|f| f.payload.clone()).collect();
        fix_authority(&mut fields);
        assert_eq!(Decoder::default().decode(&joined).unwrap(), fields);
    }

    #[test]
    fn protocol_violations_close_the_connection_and_other_protocols_pass_through() {
        let mut interleaved = PREFACE.to_vec();
        interleaved.extend(frame_bytes(FRAME_HEADERS, 0, 1, &hex(RANGE_BLOCK)[..4]));
        interleaved.extend(frame_bytes(0x0, 0, 1, b"data"));
        assert!(rewrite(&interleaved, 64).is_err(), "a DATA frame inside a header block");

        let mut orphan = PREFACE.to_vec();
        orphan.extend(frame_bytes(FRAME_CONTINUATION, FLAG_END_HEADERS, 1, &[0x82]));
        assert!(rewrite(&orphan, 64).is_err(), "a CONTINUATION without HEADERS");

        let mut over_padded = PREFACE.to_vec();
        over_padded.extend(frame_bytes(FRAME_HEADERS, FLAG_END_HEADERS | FLAG_PADDED, 1, &[9, 0x82]));
        assert!(rewrite(&over_padded, 64).is_err(), "padding longer than the frame");

        let http1 = b"GET / HTTP/1.1\r\nHost: http://127.0.0.1:2379\r\n\r\n";
        assert_eq!(rewrite(http1, 3).unwrap(), http1, "not HTTP/2: untouched, for the server to refuse");
    }
}
