// A message between parties, and its wire form. Every message travels as one byte stream:
// a header that says what it carries (layer, and per part: kind, positions, bytes), then the
// parts' payloads back to back in part order. The receiver therefore checks what arrived
// against what it expected instead of trusting its own expectation.
//
// Header (little-endian):
//   u32 magic 'C','M','S','G'   i32 layer   u32 n_parts
//   per part: u32 kind, u32 n_positions, u64 bytes, i32 positions[n_positions]
// so its size is 12 + Σ_parts (16 + 4·n_positions).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <vector>

#include "cascade/comm_model.h"

namespace cascade {

// One kind of rows of a message (the up message of a (CompNode, AttnNode) pair carries a q part
// then a kv part); each part is accounted separately.
struct MessagePart {
  CommKind kind = CommKind::q;
  std::vector<int32_t> positions;  // positions of the rows this part carries (empty for
                                   // schedule, report, and control STOP)
  uint64_t bytes = 0;              // payload bytes of this part
};

struct Message {
  int src = -1, dst = -1, layer = -1;  // layer -1: client traffic outside the layers
  std::vector<MessagePart> parts;
  uint64_t payload_bytes() const;      // sum of parts' bytes
};

// A malformed wire message; what() says what is wrong and at which byte.
class MessageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline constexpr uint32_t kMessageMagic = 0x47534d43;  // "CMSG" read as little-endian u32

// A part with 0 bytes and no positions carries nothing; encoding drops it.
bool part_is_empty(const MessagePart& part);
// `msg` as it travels: its empty parts dropped.
Message without_empty_parts(const Message& msg);

// Header then payload. `payload` holds msg.payload_bytes() bytes: the parts' payloads back to
// back in part order (may be null when that is 0). Throws std::invalid_argument on a part of
// kind header or out of range, or a count that does not fit the header's fields.
std::vector<uint8_t> encode_message(const Message& msg, const void* payload);
// The header alone (what a device link's message sends over MPI; its payload goes device to
// device). Throws as encode_message.
std::vector<uint8_t> encode_message_header(const Message& msg);

// Decodes the header at the start of data[0, size) into `out` (src and dst untouched, the
// payload not required to be there) and returns its size in bytes. Throws MessageError.
uint64_t decode_message_header(const uint8_t* data, uint64_t size, Message& out);

// Decodes a whole message: the header, and checks that exactly the parts' bytes follow it.
// Returns the payload's offset in `data`. Throws MessageError.
uint64_t decode_message(const uint8_t* data, uint64_t size, Message& out);

}  // namespace cascade
