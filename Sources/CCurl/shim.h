#ifndef TALLY_CCURL_SHIM_H
#define TALLY_CCURL_SHIM_H
#include <curl/curl.h>
#endif
