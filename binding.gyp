{
  "variables": {
    "locksmith_locks%": "<!(node -p \"process.env.LOCKSMITH_LOCKS || (process.platform === 'linux' ? 'ofd' : 'flock')\")"
  },
  "targets": [
    {
      "target_name": "locksmith_file",
      "sources": ["native/file.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "conditions": [["locksmith_locks=='flock'", { "defines": ["LOCKSMITH_FLOCK"] }]]
    }
  ]
}
