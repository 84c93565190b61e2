// The wire form of a message (message.h): what is encoded decodes to the same message, and
// every corruption of a valid encoding is refused with a message naming the byte.
#include <gtest/gtest.h>

#include <cstring>

#include "cascade/message.h"

using namespace cascade;

namespace {

// An up message: q rows of positions 0 and 4, kv rows of position 1 (payload bytes 0..99).
Message up_message() { return {1, 5, 3, {{CommKind::q, {0, 4}, 60}, {CommKind::kv, {1}, 40}}}; }

std::vector<uint8_t> payload_of(uint64_t n) {
  std::vector<uint8_t> p(n);
  for (uint64_t i = 0; i < n; ++i) p[i] = (uint8_t)(i * 7 + 1);
  return p;
}

// The header size as PROTOCOL.md / message.h state it, computed here independently.
uint64_t header_formula(const Message& m) {
  uint64_t n = 12;
  for (const MessagePart& p : m.parts) n += 16 + 4 * p.positions.size();
  return n;
}

void expect_same(const Message& a, const Message& b) {
  EXPECT_EQ(a.layer, b.layer);
  ASSERT_EQ(a.parts.size(), b.parts.size());
  for (size_t i = 0; i < a.parts.size(); ++i) {
    EXPECT_EQ(a.parts[i].kind, b.parts[i].kind) << "part " << i;
    EXPECT_EQ(a.parts[i].positions, b.parts[i].positions) << "part " << i;
    EXPECT_EQ(a.parts[i].bytes, b.parts[i].bytes) << "part " << i;
  }
}

// decode_message must throw a MessageError whose text contains `want`.
void expect_decode_error(const std::vector<uint8_t>& wire, const std::string& want) {
  Message m;
  try {
    decode_message(wire.data(), wire.size(), m);
    ADD_FAILURE() << "decoded a corrupt message; expected an error containing \"" << want << "\"";
  } catch (const MessageError& e) {
    EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("at byte"), std::string::npos) << e.what();
  }
}

void put_u32(std::vector<uint8_t>& w, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) w[at + i] = (uint8_t)(v >> (8 * i));
}

TEST(Message, RoundTrip) {
  const Message m = up_message();
  const std::vector<uint8_t> payload = payload_of(m.payload_bytes());
  const std::vector<uint8_t> wire = encode_message(m, payload.data());
  Message got;
  const uint64_t offset = decode_message(wire.data(), wire.size(), got);
  expect_same(m, got);
  EXPECT_EQ(offset, header_formula(m));
  ASSERT_EQ(wire.size(), offset + payload.size());
  EXPECT_EQ(0, std::memcmp(wire.data() + offset, payload.data(), payload.size()));
  // The header alone decodes too, without the payload.
  Message head;
  EXPECT_EQ(decode_message_header(wire.data(), offset, head), offset);
  expect_same(m, head);
}

TEST(Message, LittleEndianLayout) {
  const std::vector<uint8_t> payload = payload_of(100);
  const std::vector<uint8_t> wire = encode_message(up_message(), payload.data());
  const uint8_t want[] = {'C', 'M', 'S', 'G', 3, 0, 0, 0, 2, 0, 0, 0,
                          (uint8_t)CommKind::q, 0, 0, 0, 2, 0, 0, 0, 60, 0, 0, 0, 0, 0, 0, 0,
                          0, 0, 0, 0, 4, 0, 0, 0};
  ASSERT_GE(wire.size(), sizeof want);
  EXPECT_EQ(0, std::memcmp(wire.data(), want, sizeof want));
  // Layer −1 is written as a two's-complement i32.
  const std::vector<uint8_t> client = encode_message({0, 1, -1, {{CommKind::tokens, {7}, 4}}}, payload.data());
  EXPECT_EQ(client[4], 0xff);
  EXPECT_EQ(client[7], 0xff);
}

TEST(Message, EmptyPartsAreDropped) {
  // A kv-only up message: its q part has neither bytes nor positions.
  const Message m{1, 5, 0, {{CommKind::q, {}, 0}, {CommKind::kv, {2, 3}, 80}}};
  const std::vector<uint8_t> payload = payload_of(80);
  const std::vector<uint8_t> wire = encode_message(m, payload.data());
  Message got;
  decode_message(wire.data(), wire.size(), got);
  ASSERT_EQ(got.parts.size(), 1u);
  EXPECT_EQ(got.parts[0].kind, CommKind::kv);
  EXPECT_EQ(wire.size(), 12u + 16 + 8 + 80);
  // A part with positions but no bytes is kept.
  const Message keep{1, 5, 0, {{CommKind::q, {6}, 0}}};
  const std::vector<uint8_t> w2 = encode_message(keep, nullptr);
  decode_message(w2.data(), w2.size(), got);
  ASSERT_EQ(got.parts.size(), 1u);
  EXPECT_EQ(got.parts[0].positions, std::vector<int32_t>{6});
}

TEST(Message, ZeroParts) {
  // The client's abort: a schedule part of 0 bytes travels as a message of no parts.
  const std::vector<uint8_t> wire = encode_message({0, 2, -1, {{CommKind::schedule, {}, 0}}}, nullptr);
  EXPECT_EQ(wire.size(), 12u);
  Message got{0, 0, 7, {{CommKind::q, {1}, 1}}};
  EXPECT_EQ(decode_message(wire.data(), wire.size(), got), 12u);
  EXPECT_TRUE(got.parts.empty());
  EXPECT_EQ(got.layer, -1);
}

TEST(Message, HeaderSizeMatchesTheFormula) {
  const std::vector<Message> messages = {
      {0, 1, -1, {}},
      {0, 1, -1, {{CommKind::schedule, {}, 123}}},
      {0, 1, -1, {{CommKind::control, {40}, 8}}},
      up_message(),
      {2, 0, 29, {{CommKind::partial, {1, 2, 3, 4, 5, 6, 7}, 7 * 264}}},
      {1, 0, -1, {{CommKind::report, {}, 0}, {CommKind::logits, {9}, 4}}},  // report part dropped
  };
  for (const Message& m : messages) {
    const std::vector<uint8_t> payload = payload_of(m.payload_bytes());
    const std::vector<uint8_t> wire = encode_message(m, payload.data());
    EXPECT_EQ(wire.size() - m.payload_bytes(), header_formula(without_empty_parts(m)));
  }
}

TEST(Message, EveryTruncationFails) {
  const Message m = up_message();
  const std::vector<uint8_t> payload = payload_of(m.payload_bytes());
  const std::vector<uint8_t> wire = encode_message(m, payload.data());
  for (size_t n = 0; n < wire.size(); ++n) {
    SCOPED_TRACE(std::to_string(n) + " of " + std::to_string(wire.size()) + " bytes");
    expect_decode_error(std::vector<uint8_t>(wire.begin(), wire.begin() + n), "");
  }
  // And one byte too many.
  std::vector<uint8_t> longer = wire;
  longer.push_back(0);
  expect_decode_error(longer, "follow the header");
}

// Found by fuzz_wire (fuzz/corpus/wire/regress-crash-c712e8d1…): a part with no positions and
// 0 bytes decoded, though encoding drops such parts, so that the message re-encoded to other
// bytes. The decoder now refuses it: one encoding per message.
TEST(Message, AnEmptyPartOnTheWireIsRefused) {
  const Message m{1, 3, 0, {{CommKind::tokens, {3}, 4}}};
  std::vector<uint8_t> wire = encode_message(m, "abcd");
  // The same message with a second part: kind 0 (schedule), no positions, 0 bytes.
  wire[8] = 2;
  const std::vector<uint8_t> empty_part = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  wire.insert(wire.begin() + 12 + 16 + 4, empty_part.begin(), empty_part.end());
  expect_decode_error(wire, "part 1 of 2 (schedule) carries nothing (no positions, 0 bytes)");
}

TEST(Message, BadMagic) {
  std::vector<uint8_t> wire = encode_message({0, 1, -1, {{CommKind::tokens, {3}, 4}}}, "abcd");
  wire[2] = 'X';
  expect_decode_error(wire, "bad magic");
}

TEST(Message, KindOutOfRange) {
  std::vector<uint8_t> wire = encode_message({0, 1, -1, {{CommKind::tokens, {3}, 4}}}, "abcd");
  put_u32(wire, 12, kNumCommKinds);
  expect_decode_error(wire, "kind " + std::to_string(kNumCommKinds));
  put_u32(wire, 12, (uint32_t)CommKind::header);  // a header is no part
  expect_decode_error(wire, "kind 8");
  put_u32(wire, 12, 0xffffffffu);
  expect_decode_error(wire, "kind 4294967295");
  // Encoding refuses such parts too.
  EXPECT_THROW(encode_message({0, 1, -1, {{CommKind::header, {}, 4}}}, "abcd"), std::invalid_argument);
}

TEST(Message, PayloadSizeMustMatch) {
  std::vector<uint8_t> wire = encode_message({0, 1, -1, {{CommKind::tokens, {3}, 4}}}, "abcd");
  put_u32(wire, 12 + 8, 5);  // the part now declares 5 bytes, 4 follow
  expect_decode_error(wire, "declare 5 payload bytes but 4 follow");
  put_u32(wire, 12 + 8, 3);
  expect_decode_error(wire, "declare 3 payload bytes but 4 follow");
  // Sizes whose sum overflows 64 bits.
  std::vector<uint8_t> two = encode_message({0, 1, 0, {{CommKind::q, {}, 1}, {CommKind::kv, {}, 1}}}, "ab");
  for (size_t at : {12 + 8, 12 + 16 + 8}) {
    put_u32(two, at, 0xffffffffu);
    put_u32(two, at + 4, 0xffffffffu);
  }
  expect_decode_error(two, "overflows");
}

TEST(Message, CountsTooLargeForTheBuffer) {
  std::vector<uint8_t> wire = encode_message(up_message(), payload_of(100).data());
  std::vector<uint8_t> bad = wire;
  put_u32(bad, 12 + 4, 1000000);  // n_positions of part 0
  expect_decode_error(bad, "declares 1000000 positions");
  bad = wire;
  put_u32(bad, 8, 0x10000000);  // n_parts
  expect_decode_error(bad, "parts cannot fit");
}

TEST(Message, LayerBelowMinusOne) {
  std::vector<uint8_t> wire = encode_message({0, 1, -1, {}}, nullptr);
  put_u32(wire, 4, (uint32_t)-2);
  expect_decode_error(wire, "layer -2");
}

}  // namespace
