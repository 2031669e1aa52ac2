// The one way a command on the command line reports why it stops: "<command>: <message>" on stderr, and the
// exit status it ends with.
#pragma once

#include <iostream>
#include <string_view>

namespace clawbot {

// Prints "<command>: <message>\n" on stderr and returns `status`, so that a command ends with
// `return cli_error("clawbot serve", e.what(), 1);`. A message of several lines is printed as it is.
// (Through std::cerr, which is unbuffered and in step with stdio's stderr: a test may capture it.)
inline int cli_error(std::string_view command, std::string_view message, int status) {
  std::cerr << command << ": " << message << '\n';
  return status;
}

}  // namespace clawbot
