{
  "targets": [
    {
      "target_name": "pifa_native",
      "sources": [
        "native/addon.cc",
        "native/blas_runtime.cc",
        "native/errors.cc",
        "native/job.cc",
        "native/matrix_io.cc",
        "native/ops_blas.cc",
        "native/ops_factor.cc",
        "native/ops_spectral.cc"
      ],
      "dependencies": [
        "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"
      ],
      "defines": ["NAPI_VERSION=8"],
      # -O2 follows node's -O3 on the command line and wins. No -march: the
      # binary must run on other x86-64 machines; OpenBLAS picks kernels at run time.
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra"],
      "cflags_cc!": ["-std=gnu++17"],
      "include_dirs": ["native"],
      # libopenblas comes first so that the LAPACK symbols liblapacke calls bind
      # to OpenBLAS, not to whatever the liblapack.so.3 alternative points at.
      # The addon calls openblas_* functions, so --as-needed keeps the library.
      "libraries": [
        "-lopenblas",
        "-llapacke",
        "-ldl"
      ]
    }
  ]
}
