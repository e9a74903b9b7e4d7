#ifndef TALLY_AGENT_SPOOL_FRAME_H_
#define TALLY_AGENT_SPOOL_FRAME_H_

// The framing of records in a spool segment file:
//
//   segment := kSegmentMagic frame*
//   frame   := length:u32le crc:u32le payload[length]
//
// `crc` is the CRC-32 (zlib's) of the four length bytes followed by the payload, so a torn or
// corrupted length is caught as well as a corrupted payload. A frame that runs past the end of
// the file is incomplete (a write cut short by a crash); one whose CRC does not match is corrupt.

#include <cstdint>
#include <string>
#include <string_view>

namespace tally::agent::spool {

inline constexpr std::string_view kSegmentMagic = "TSPOOL01";
inline constexpr size_t kFrameHeaderSize = 8;
// Larger payloads are refused on write and treated as corruption on read: a report is at most
// ~40 KiB (the server's limits), so a bigger length can only be garbage.
inline constexpr uint32_t kMaxPayloadSize = 1 << 20;

// The frame holding `payload` (at most kMaxPayloadSize bytes).
std::string EncodeFrame(std::string_view payload);

enum class FrameStatus { kOk, kIncomplete, kCorrupt };

struct DecodedFrame {
  FrameStatus status;
  std::string_view payload;  // valid if kOk; points into the decoded buffer
  size_t size = 0;           // bytes of the whole frame if kOk
};

// Decodes the frame at the start of `data`. kIncomplete if `data` ends before the frame does
// (including an empty `data`).
DecodedFrame DecodeFrame(std::string_view data);

}  // namespace tally::agent::spool

#endif  // TALLY_AGENT_SPOOL_FRAME_H_
