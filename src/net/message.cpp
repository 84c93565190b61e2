// Wire form of a Message (message.h). Written byte by byte in little-endian order, so the
// format does not depend on the host; decoding trusts nothing and names the byte at fault.
#include "cascade/message.h"

#include <limits>
#include <string>

namespace cascade {
namespace {

constexpr uint64_t kFixedHeaderBytes = 12;  // magic, layer, n_parts
constexpr uint64_t kPartHeaderBytes = 16;   // kind, n_positions, bytes

void put_u32(std::vector<uint8_t>& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back((uint8_t)(v >> (8 * i)));
}
void put_u64(std::vector<uint8_t>& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back((uint8_t)(v >> (8 * i)));
}
uint32_t get_u32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= (uint32_t)p[i] << (8 * i);
  return v;
}
uint64_t get_u64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

bool valid_part_kind(uint32_t kind) {
  return kind < (uint32_t)kNumCommKinds && kind != (uint32_t)CommKind::header;
}

[[noreturn]] void fail(uint64_t at, const std::string& what) {
  throw MessageError("malformed message at byte " + std::to_string(at) + ": " + what);
}

// Reads the header, checking every field against the `size` bytes available.
uint64_t read_header(const uint8_t* data, uint64_t size, Message& out) {
  if (size < kFixedHeaderBytes)
    fail(size, "truncated: " + std::to_string(size) + " bytes, a header needs at least " +
                   std::to_string(kFixedHeaderBytes));
  const uint32_t magic = get_u32(data);
  if (magic != kMessageMagic) fail(0, "bad magic (not a Cascade message)");
  out.layer = (int32_t)get_u32(data + 4);
  if (out.layer < -1) fail(4, "layer " + std::to_string(out.layer) + " < -1");
  const uint32_t n_parts = get_u32(data + 8);
  uint64_t at = kFixedHeaderBytes;
  // Each part takes at least 16 bytes: a count the buffer cannot hold is corrupt.
  if (n_parts > (size - at) / kPartHeaderBytes)
    fail(8, std::to_string(n_parts) + " parts cannot fit in the " + std::to_string(size - at) +
                " bytes that follow");
  out.parts.assign(n_parts, MessagePart{});
  for (uint32_t i = 0; i < n_parts; ++i) {
    const std::string part = "part " + std::to_string(i) + " of " + std::to_string(n_parts);
    if (size - at < kPartHeaderBytes)
      fail(at, "truncated in the header of " + part + ": " + std::to_string(size - at) +
                   " bytes left, 16 needed");
    MessagePart& p = out.parts[i];
    const uint32_t kind = get_u32(data + at);
    if (!valid_part_kind(kind))
      fail(at, part + " has kind " + std::to_string(kind) + " (valid: 0.." +
                   std::to_string(kNumCommKinds - 1) + " except header)");
    p.kind = (CommKind)kind;
    const uint32_t n_pos = get_u32(data + at + 4);
    p.bytes = get_u64(data + at + 8);
    at += kPartHeaderBytes;
    if (n_pos > (size - at) / 4)
      fail(at - 12, part + " (" + comm_kind_name(p.kind) + ") declares " + std::to_string(n_pos) +
                        " positions but only " + std::to_string(size - at) + " bytes follow");
    // Encoding drops empty parts, so one never travels: refusing it keeps one encoding per
    // message (fuzz_wire found the decoder accepting what no sender writes).
    if (n_pos == 0 && p.bytes == 0)
      fail(at - kPartHeaderBytes, part + " (" + comm_kind_name(p.kind) + ") carries nothing (no positions, 0 bytes)");
    p.positions.resize(n_pos);
    for (uint32_t j = 0; j < n_pos; ++j, at += 4) p.positions[j] = (int32_t)get_u32(data + at);
  }
  return at;
}

}  // namespace

uint64_t Message::payload_bytes() const {
  uint64_t n = 0;
  for (const MessagePart& p : parts) n += p.bytes;
  return n;
}

bool part_is_empty(const MessagePart& part) { return part.bytes == 0 && part.positions.empty(); }

Message without_empty_parts(const Message& msg) {
  Message out{msg.src, msg.dst, msg.layer, {}};
  for (const MessagePart& p : msg.parts)
    if (!part_is_empty(p)) out.parts.push_back(p);
  return out;
}

std::vector<uint8_t> encode_message(const Message& msg_in, const void* payload) {
  const uint64_t payload_bytes = msg_in.payload_bytes();
  if (payload_bytes > 0 && payload == nullptr)
    throw std::invalid_argument("message payload of " + std::to_string(payload_bytes) + " bytes is null");
  std::vector<uint8_t> out = encode_message_header(msg_in);
  const uint8_t* src = static_cast<const uint8_t*>(payload);
  out.insert(out.end(), src, src + payload_bytes);
  return out;
}

std::vector<uint8_t> encode_message_header(const Message& msg_in) {
  const Message msg = without_empty_parts(msg_in);
  if (msg.layer < -1) throw std::invalid_argument("message layer " + std::to_string(msg.layer) + " < -1");
  uint64_t header = kFixedHeaderBytes;
  for (const MessagePart& p : msg.parts) {
    if (!valid_part_kind((uint32_t)p.kind))
      throw std::invalid_argument("a message part cannot have kind " + std::to_string((int)p.kind));
    if (p.positions.size() > std::numeric_limits<uint32_t>::max())
      throw std::invalid_argument("a message part carries more than 2^32 - 1 positions");
    header += kPartHeaderBytes + 4 * p.positions.size();
  }
  std::vector<uint8_t> out;
  out.reserve(header);
  put_u32(out, kMessageMagic);
  put_u32(out, (uint32_t)(int32_t)msg.layer);
  put_u32(out, (uint32_t)msg.parts.size());
  for (const MessagePart& p : msg.parts) {
    put_u32(out, (uint32_t)p.kind);
    put_u32(out, (uint32_t)p.positions.size());
    put_u64(out, p.bytes);
    for (int32_t pos : p.positions) put_u32(out, (uint32_t)pos);
  }
  return out;
}

uint64_t decode_message_header(const uint8_t* data, uint64_t size, Message& out) {
  Message m;
  const uint64_t header = read_header(data, size, m);
  uint64_t total = 0;  // the payload's size must be representable, even if not yet received
  for (size_t i = 0; i < m.parts.size(); ++i) {
    if (m.parts[i].bytes > std::numeric_limits<uint64_t>::max() - header - total)
      fail(header, "part " + std::to_string(i) + " declares " + std::to_string(m.parts[i].bytes) +
                       " bytes: the message size overflows");
    total += m.parts[i].bytes;
  }
  out.layer = m.layer;
  out.parts = std::move(m.parts);
  return header;
}

uint64_t decode_message(const uint8_t* data, uint64_t size, Message& out) {
  Message m;
  const uint64_t header = decode_message_header(data, size, m);
  const uint64_t payload = m.payload_bytes();  // no overflow: checked above
  if (payload != size - header)
    fail(header, "the parts declare " + std::to_string(payload) + " payload bytes but " +
                     std::to_string(size - header) + " follow the header");
  out.layer = m.layer;
  out.parts = std::move(m.parts);
  return header;
}

}  // namespace cascade
