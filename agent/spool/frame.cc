#include "agent/spool/frame.h"

#include <zlib.h>

#include <cassert>

namespace tally::agent::spool {
namespace {

void PutU32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint32_t GetU32(std::string_view in) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(in[i]);
  return v;
}

uint32_t Checksum(std::string_view length_bytes, std::string_view payload) {
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32(crc, reinterpret_cast<const Bytef*>(length_bytes.data()), length_bytes.size());
  crc = crc32(crc, reinterpret_cast<const Bytef*>(payload.data()), payload.size());
  return static_cast<uint32_t>(crc);
}

}  // namespace

std::string EncodeFrame(std::string_view payload) {
  assert(payload.size() <= kMaxPayloadSize);
  std::string frame;
  frame.reserve(kFrameHeaderSize + payload.size());
  PutU32(frame, static_cast<uint32_t>(payload.size()));
  PutU32(frame, Checksum(std::string_view(frame).substr(0, 4), payload));
  frame.append(payload);
  return frame;
}

DecodedFrame DecodeFrame(std::string_view data) {
  if (data.size() < kFrameHeaderSize) return {FrameStatus::kIncomplete, {}, 0};
  uint32_t length = GetU32(data.substr(0, 4));
  if (length > kMaxPayloadSize) return {FrameStatus::kCorrupt, {}, 0};
  if (data.size() - kFrameHeaderSize < length) return {FrameStatus::kIncomplete, {}, 0};
  std::string_view payload = data.substr(kFrameHeaderSize, length);
  if (Checksum(data.substr(0, 4), payload) != GetU32(data.substr(4, 4))) {
    return {FrameStatus::kCorrupt, {}, 0};
  }
  return {FrameStatus::kOk, payload, kFrameHeaderSize + length};
}

}  // namespace tally::agent::spool
