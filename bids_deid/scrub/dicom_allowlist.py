"""Standard attributes outside Table E.1-1 that a valid, convertible image needs.

PS3.15 Table E.1-1 lists what may identify; everything else in a real object is not
necessarily harmless (free text, vendor fields), so bids-deid removes any attribute that is
neither in the table nor in this allowlist ("unknown means identifying").

The allowlist holds non-identifying attributes of the pixel, geometry, frame-of-reference,
acquisition and enhanced multi-frame (functional group) modules that converters such as
dcm2niix read, plus code-sequence building blocks. Date/time and UID values that pass the
allowlist still follow the date policy and the UID remapping.
"""

from __future__ import annotations

from .dicom_dict import tag_for_keyword

# Whole public groups whose non-text attributes are acquisition/geometry/pixel parameters.
# Text VRs in these groups are kept only when listed in KEYWORDS below.
SAFE_GROUPS = frozenset({0x0018, 0x0020, 0x0028, 0x0054, 0x7FE0})
TEXT_VRS = frozenset({"LO", "LT", "ST", "UT", "UC", "SH", "PN", "AE", "UR", "UN", "OB", "OW"})

_KEYWORDS = """
SpecificCharacterSet ImageType SOPClassUID Modality Manufacturer ManufacturerModelName SoftwareVersions
InstanceNumber SeriesNumber AcquisitionNumber ConversionType PresentationIntentType
BodyPartExamined PatientPosition Laterality ImageLaterality PositionReferenceIndicator
ScanningSequence SequenceVariant ScanOptions MRAcquisitionType SequenceName AngioFlag
SliceThickness SpacingBetweenSlices RepetitionTime EchoTime InversionTime NumberOfAverages
ImagingFrequency ImagedNucleus EchoNumbers MagneticFieldStrength NumberOfPhaseEncodingSteps
EchoTrainLength PercentSampling PercentPhaseFieldOfView PixelBandwidth ReceiveCoilName TransmitCoilName
AcquisitionMatrix InPlanePhaseEncodingDirection FlipAngle VariableFlipAngleFlag SAR dBdt
TriggerTime NominalInterval HeartRate CardiacNumberOfImages ImagesInAcquisition
ImagePositionPatient ImageOrientationPatient FrameOfReferenceUID SliceLocation
TemporalPositionIdentifier NumberOfTemporalPositions TemporalResolution
SamplesPerPixel PhotometricInterpretation PlanarConfiguration NumberOfFrames FrameIncrementPointer
Rows Columns PixelSpacing BitsAllocated BitsStored HighBit PixelRepresentation
SmallestImagePixelValue LargestImagePixelValue PixelPaddingValue PixelPaddingRangeLimit
WindowCenter WindowWidth WindowCenterWidthExplanation VOILUTFunction
RescaleIntercept RescaleSlope RescaleType LossyImageCompression LossyImageCompressionRatio
LossyImageCompressionMethod PixelData FloatPixelData DoubleFloatPixelData ExtendedOffsetTable
ExtendedOffsetTableLengths PixelAspectRatio PixelIntensityRelationship PixelIntensityRelationshipSign
RedPaletteColorLookupTableDescriptor GreenPaletteColorLookupTableDescriptor
BluePaletteColorLookupTableDescriptor RedPaletteColorLookupTableData GreenPaletteColorLookupTableData
BluePaletteColorLookupTableData SegmentedRedPaletteColorLookupTableData
SegmentedGreenPaletteColorLookupTableData SegmentedBluePaletteColorLookupTableData
ModalityLUTSequence VOILUTSequence LUTDescriptor LUTData LUTExplanation ModalityLUTType
KVP XRayTubeCurrent ExposureTime Exposure FilterType ConvolutionKernel DataCollectionDiameter
ReconstructionDiameter DistanceSourceToDetector DistanceSourceToPatient GantryDetectorTilt
TableHeight RotationDirection GeneratorPower FocalSpots SpiralPitchFactor
ContentQualification BurnedInAnnotation RecognizableVisualFeatures QualityControlImage
SharedFunctionalGroupsSequence PerFrameFunctionalGroupsSequence DimensionOrganizationSequence
DimensionIndexSequence DimensionIndexPointer FunctionalGroupPointer DimensionDescriptionLabel
DimensionOrganizationType DimensionIndexValues StackID InStackPositionNumber TemporalPositionIndex
FrameContentSequence PixelMeasuresSequence PlanePositionSequence PlaneOrientationSequence
FrameAcquisitionNumber FrameReferenceDateTime FrameAcquisitionDateTime FrameAcquisitionDuration
CardiacSynchronizationSequence PixelValueTransformationSequence FrameVOILUTSequence
FrameAnatomySequence AnatomicRegionSequence FrameLaterality RealWorldValueMappingSequence
MRImageFrameTypeSequence FrameType PixelPresentation VolumetricProperties VolumeBasedCalculationTechnique
ComplexImageComponent AcquisitionContrast MRTimingAndRelatedParametersSequence MREchoSequence
EffectiveEchoTime MRModifierSequence MRImagingModifierSequence MRReceiveCoilSequence
MRTransmitCoilSequence MRFOVGeometrySequence MRMetaboliteMapSequence MRDiffusionSequence
DiffusionBValue DiffusionDirectionality DiffusionGradientDirectionSequence DiffusionGradientOrientation
MRAveragesSequence MRVelocityEncodingSequence MRSpatialSaturationSequence MRArterialSpinLabelingSequence
CTImageFrameTypeSequence CTAcquisitionTypeSequence CTAcquisitionDetailsSequence CTTableDynamicsSequence
CTPositionSequence CTGeometrySequence CTReconstructionSequence CTExposureSequence CTXRayDetailsSequence
CTPixelValueTransformationSequence IrradiationEventIdentificationSequence
ContrastBolusUsageSequence RespiratorySynchronizationSequence
CodeValue CodingSchemeDesignator CodingSchemeVersion CodeMeaning LongCodeValue URNCodeValue
MappingResource ContextIdentifier ContextUID MappingResourceUID CodingSchemeUID
ReferencedSOPClassUID ReferencedSOPInstanceUID ReferencedFrameNumber ReferencedSegmentNumber
ReferencedImageSequence ReferencedSeriesSequence SourceImageSequence PurposeOfReferenceCodeSequence
StudyInstanceUID SeriesInstanceUID SOPInstanceUID
ValueType ConceptNameCodeSequence ConceptCodeSequence RelationshipType ContinuityOfContent
MeasuredValueSequence NumericValue MeasurementUnitsCodeSequence FloatingPointValue
ContentTemplateSequence TemplateIdentifier CompletionFlag VerificationFlag
ReferencedContentItemIdentifier ObservationDateTime ContentDate ContentTime
CurrentRequestedProcedureEvidenceSequence PertinentOtherEvidenceSequence
ProcedureCodeSequence
ViewPosition ViewCodeSequence ImageComments
LongitudinalTemporalInformationModified PatientIdentityRemoved DeidentificationMethod
DeidentificationMethodCodeSequence
PatientName PatientID PatientBirthDate PatientSex StudyDate StudyTime AccessionNumber
ReferringPhysicianName StudyID SeriesDate SeriesTime AcquisitionDate AcquisitionTime
InstanceCreationDate InstanceCreationTime
LUTLabel PresentationLUTShape RealWorldValueFirstValueMapped RealWorldValueLastValueMapped
RealWorldValueIntercept RealWorldValueSlope RealWorldValueLUTData DoubleFloatRealWorldValueFirstValueMapped
DoubleFloatRealWorldValueLastValueMapped QuantityDefinitionSequence PulseSequenceName
GraphicData GraphicType ReferencedSOPSequence PerformedProcedureCodeSequence ReferencedFrameOfReferenceUID
"""

KEYWORDS = frozenset(_KEYWORDS.split())
TAGS = frozenset(t for t in (tag_for_keyword(k) for k in KEYWORDS) if t is not None)

# UID attributes whose values are well-known (class, syntax, coding scheme): never remapped.
WELL_KNOWN_UID_TAGS = frozenset(
    t
    for t in (
        tag_for_keyword(k)
        for k in (
            "SOPClassUID ReferencedSOPClassUID MediaStorageSOPClassUID TransferSyntaxUID "
            "CodingSchemeUID ContextUID MappingResourceUID ReferencedSOPClassUIDInFile "
            "ReferencedTransferSyntaxUIDInFile SOPClassesInStudy RelatedGeneralSOPClassUID "
            "OriginalSpecializedSOPClassUID SOPClassesSupported AffectedSOPClassUID RequestedSOPClassUID"
        ).split()
    )
    if t is not None
)
DICOM_ROOT = "1.2.840.10008."


def is_allowed(tag: int, vr: str | None) -> bool:
    """True if a public attribute outside Table E.1-1 may be kept."""
    if tag in TAGS:
        return True
    return (tag >> 16) in SAFE_GROUPS and vr is not None and vr not in TEXT_VRS
