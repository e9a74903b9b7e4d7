#ifndef TALLY_TESTS_TESTING_TEMP_DIR_H_
#define TALLY_TESTS_TESTING_TEMP_DIR_H_

#include <string>

namespace tally::test {

// A fresh, empty directory (mkdtemp under $TEST_TMPDIR, else $TMPDIR, else /tmp) that is removed
// with everything in it when the TempDir is destroyed. Aborts with a message if the directory
// cannot be created. Not copyable; movable.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  TempDir(TempDir&& other) noexcept;
  TempDir& operator=(TempDir&& other) noexcept;

  // The absolute path of the directory, without a trailing '/'.
  const std::string& path() const { return path_; }

 private:
  void Remove();

  std::string path_;  // empty once moved from
};

}  // namespace tally::test

#endif  // TALLY_TESTS_TESTING_TEMP_DIR_H_
