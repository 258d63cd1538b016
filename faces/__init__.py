"""faces: finding and framing the face in a photo, below the data sets and the model:
an image file to RGB pixels and the stored-face encoding (`faces.pixels`,
`faces.encoding`), the face box and its margin (`faces.facebox`), the face finders
(`faces.detect`), how a data set frames its faces (`faces.framing`) and the pixel
contract's one resize (`faces.resize`)."""
