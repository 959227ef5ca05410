// An event’s quantity is a Quantity: whoever imports UsageEvents has it.
@_exported import Quantities
