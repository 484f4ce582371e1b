// Glue-side controls of runtime.cc (not visible to kernels).
#pragma once
void sp_set_threads(int n);
void sp_release_scratch();
// CPU seconds of the calling thread plus its pool's helper threads (not node's own threads).
double sp_cpu_seconds();
