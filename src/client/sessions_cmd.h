// `clawbot sessions list|show|rename|rm|export|import`: the conversations that `clawbot chat` and `ask`
// stored.
#pragma once

#include <string>

namespace clawbot::client {

struct SessionsOptions {
  std::string action;         // list, show, rename, rm, export or import
  std::string db;             // the database file; empty: SessionStore::default_path()
  std::string name;           // show, rename (the old name), rm, export: a name or an id
  std::string new_name;       // rename
  std::string format = "md";  // export: md or json
  std::string output;         // export: the file to write; empty: stdout
  std::string file;   // import: the JSON file to read ("-": stdin); `name`, when set, names the session
  bool json = false;  // list: a JSON array instead of the table
};

// Returns the exit status: 0 on success, 1 on any failure (with the reason on stderr).
int run_sessions(const SessionsOptions& options);

}  // namespace clawbot::client
