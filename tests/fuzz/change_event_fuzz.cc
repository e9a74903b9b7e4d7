// Change events a router reads from the changes topics and streams to watchers.

#include <cstddef>
#include <cstdint>

#include "server/watch/change_feed.h"
#include "server/watch/resume_token.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tally::watch::ChangeItem item;
  if (!tally::watch::ParseChangeItem(data, size, 0, 7, item)) return 0;
  tally::watch::Filter filter{"", "site-"};
  (void)filter.Matches(item.change.object_key());
  std::string bytes;
  item.change.SerializeToString(&bytes);
  return 0;
}
