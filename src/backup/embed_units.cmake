# Writes OUT: a C++ file holding the systemd units of DIR (FILES, ;-separated) as string literals, so that
# `clawbot install-service` carries the very files deploy/systemd holds.
set(body "// Generated from deploy/systemd by src/backup/embed_units.cmake: edit those files, not this one.\n")
string(APPEND body "#include \"backup/services.h\"\n\nnamespace clawbot::backup {\n\n")
string(APPEND body "std::span<const UnitFile> unit_files() {\n  static const UnitFile files[] = {\n")
foreach(name IN LISTS FILES)
  file(READ "${DIR}/${name}" text)
  string(APPEND body "      {\"${name}\", R\"clawbot_unit(${text})clawbot_unit\"},\n")
endforeach()
string(APPEND body "  };\n  return files;\n}\n\n}  // namespace clawbot::backup\n")
file(WRITE "${OUT}.tmp" "${body}")
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different "${OUT}.tmp" "${OUT}")
