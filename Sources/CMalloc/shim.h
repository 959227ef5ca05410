#ifndef TALLY_CMALLOC_SHIM_H
#define TALLY_CMALLOC_SHIM_H
// glibc's malloc tuning (mallopt); part of libc, so nothing to link.
#include <malloc.h>
#endif
