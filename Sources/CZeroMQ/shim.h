// libzmq's C API, reached from Swift through the `ZMQ` wrapper in Shared/Wire.
#include <zmq.h>
