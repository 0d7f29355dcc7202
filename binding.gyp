{
  "targets": [
    {
      "target_name": "locksmith_ofd",
      "sources": ["native/ofd.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"]
    }
  ]
}
