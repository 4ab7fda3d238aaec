// kiln::Error: every runtime error Kiln reports. Its message says what was wrong and where
// (file, key, layer, expected and got).
#pragma once

#include <stdexcept>
#include <string>

namespace kiln {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error("kiln: " + what) {}
};

}  // namespace kiln
