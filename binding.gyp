{
  "targets": [
    {
      "target_name": "kernway",
      # One translation unit (see native/src/unity.cc); the parts are native/src/*.cc.
      "sources": ["native/src/unity.cc"],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
      "defines": ["NAPI_VERSION=8"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-missing-field-initializers", "-Wno-unused-parameter"],
      "cflags_cc!": ["-std=gnu++17", "-std=gnu++14"],
      "libraries": ["<!@(pkg-config --libs libbpf)"],
      "include_dirs": ["<!@(pkg-config --cflags-only-I libbpf | sed 's/-I//g')"]
    }
  ]
}
