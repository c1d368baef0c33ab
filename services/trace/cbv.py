"""The CBV 2.0 vocabularies EPCIS 2.0 events use: their namespaces and their bare words
(business steps, dispositions, business transaction, source/destination and error
types; the GS1 web vocabulary's sensor measurement types, exceptions and components).

One list of words for the event hash (:mod:`services.trace.eventhash`, which expands
them to URIs) and the event validator (:mod:`services.trace.epcis_values`, which
normalises values to them). Pure data: this module never does I/O and must never hold
anything but constants.
"""

from __future__ import annotations

__all__ = [
    "BIZ_STEP_WORDS",
    "BIZ_TRANSACTION_TYPE_WORDS",
    "CBV",
    "COMPONENT_WORDS",
    "DISPOSITION_WORDS",
    "EPCIS_NS",
    "ERROR_REASON_WORDS",
    "GS1_VOC",
    "MEASUREMENT_TYPE_WORDS",
    "SENSOR_EXCEPTION_WORDS",
    "SOURCE_DESTINATION_TYPE_WORDS",
]

CBV = "https://ref.gs1.org/cbv/"
GS1_VOC = "https://ref.gs1.org/voc/"
EPCIS_NS = "https://ref.gs1.org/epcis/"

BIZ_STEP_WORDS = (
    "accepting", "arriving", "assembling", "collecting", "commissioning", "consigning",
    "creating_class_instance", "cycle_counting", "decommissioning", "departing", "destroying",
    "disassembling", "dispensing", "encoding", "entering_exiting", "holding", "inspecting",
    "installing", "killing", "loading", "other", "packing", "picking", "receiving", "removing",
    "repackaging", "repairing", "replacing", "reserving", "retail_selling", "sampling",
    "sensor_reporting", "shipping", "staging_outbound", "stock_taking", "stocking", "storing",
    "transporting", "unloading", "unpacking", "void_shipping"
)
DISPOSITION_WORDS = (
    "active", "available", "completeness_verified", "completeness_inferred", "conformant",
    "container_closed", "container_open", "damaged", "destroyed", "dispensed", "disposed",
    "encoded", "expired", "in_progress", "in_transit", "inactive", "mismatch_instance",
    "mismatch_class", "mismatch_quantity", "needs_replacement", "no_pedigree_match",
    "non_conformant", "non_sellable_other", "partially_dispensed", "recalled", "reserved",
    "retail_sold", "returned", "sellable_accessible", "sellable_not_accessible", "stolen",
    "unavailable", "unknown"
)
BIZ_TRANSACTION_TYPE_WORDS = (
    "bol", "cert", "desadv", "inv", "pedigree", "po", "poc", "prodorder", "recadv", "rma",
    "testprd", "testres", "upevt"
)
SOURCE_DESTINATION_TYPE_WORDS = ("owning_party", "possessing_party", "location")
ERROR_REASON_WORDS = ("did_not_occur", "incorrect_data")
MEASUREMENT_TYPE_WORDS = (
    "AbsoluteHumidity", "AbsorbedDose", "AbsorbedDoseRate", "Acceleration", "Radioactivity",
    "Altitude", "AmountOfSubstance", "AmountOfSubstancePerUnitVolume", "Angle",
    "AngularAcceleration", "AngularMomentum", "AngularVelocity", "Area", "Capacitance",
    "Conductance", "Conductivity", "Count", "Density", "Dimensionless", "DoseEquivalent",
    "DoseEquivalentRate", "DynamicViscosity", "ElectricCharge", "ElectricCurrent",
    "ElectricCurrentDensity", "ElectricFieldStrength", "Energy", "Exposure", "Force",
    "Frequency", "Illuminance", "Inductance", "Irradiance", "KinematicViscosity", "Length",
    "LinearMomentum", "Luminance", "LuminousFlux", "LuminousIntensity", "MagneticFlux",
    "MagneticFluxDensity", "MagneticVectorPotential", "Mass", "MassConcentration",
    "MassFlowRate", "MassPerAreaTime", "MemoryCapacity", "MolalityOfSolute", "MolarEnergy",
    "MolarMass", "MolarVolume", "Power", "Pressure", "RadiantFlux", "RadiantIntensity",
    "RelativeHumidity", "Resistance", "Resistivity", "SolidAngle", "SpecificVolume", "Speed",
    "SurfaceDensity", "SurfaceTension", "Temperature", "Time", "Torque", "Voltage", "Volume",
    "VolumeFlowRate", "VolumeFraction", "VolumetricFlux", "Wavenumber"
)
SENSOR_EXCEPTION_WORDS = ("ALARM_CONDITION", "ERROR_CONDITION")
COMPONENT_WORDS = (
    "x", "y", "z", "axial_distance", "azimuth", "height", "spherical_radius", "polar_angle",
    "elevation_angle", "easting", "northing", "latitude", "longitude", "altitude"
)
