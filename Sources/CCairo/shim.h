#ifndef TALLY_CCAIRO_SHIM_H
#define TALLY_CCAIRO_SHIM_H
#include <cairo/cairo.h>
#include <cairo/cairo-pdf.h>
#endif
