// The one error type of the SQLite stores (sessions, keys, audit): its message names the database file and
// the problem.
#pragma once

#include <string>

#include "common/error.h"

namespace clawbot {

enum class StoreErrorKind {
  not_found,         // no such session or message
  name_taken,        // another session has that name
  invalid_argument,  // a name, role or state this store does not accept
  unusable,          // not a database, a newer schema, cannot open or create the file
  read_only,         // the file or its directory cannot be written
  busy,              // another process held the lock for longer than the busy timeout
  io,                // any other SQLite failure (disk full, I/O error, corruption)
};

class StoreError : public ClawbotError {
 public:
  StoreError(StoreErrorKind kind, const std::string& message)
      : ClawbotError(ErrorKind::internal, message), kind_(kind) {}
  StoreErrorKind kind() const noexcept { return kind_; }

 private:
  StoreErrorKind kind_;
};

}  // namespace clawbot
